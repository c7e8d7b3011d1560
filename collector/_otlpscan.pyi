from typing import Any

def scan(data: bytes, oldest_ns: int, /) -> tuple[int, dict[str, int]] | None: ...
def decode(
    data: bytes, oldest_ns: int, max_attributes: int, max_value_length: int, max_events: int, max_links: int,
    max_array_items: int, shard_index: int, shard_count: int, /,
) -> tuple[list[tuple[dict[str, Any], str, list[tuple[str, str, str, list[Any]]]]], int] | None: ...
def span_rules(
    span_type: type, context_type: type, kinds: tuple[Any, ...], statuses: tuple[Any, ...], sampled: Any, default_state: Any,
    has_is_remote: int, is_remote: int, /,
) -> None: ...
def spans(
    items: list[Any], resource: Any, scope: Any, out: list[Any], fallback: Any, project: str | None, project_key: str, /,
) -> list[str]: ...
def owners(
    data: bytes, project_key: str, run_key: str, token_project: str | None, /,
) -> list[tuple[tuple[int, int, int], str, str | None, str]] | None: ...

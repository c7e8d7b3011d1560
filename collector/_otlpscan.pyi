from typing import Any

def scan(data: bytes, oldest_ns: int, /) -> tuple[int, dict[str, int]] | None: ...
def decode(
    data: bytes, oldest_ns: int, max_attributes: int, max_value_length: int, max_events: int, max_links: int,
    max_array_items: int, shard_index: int, shard_count: int, /,
) -> tuple[list[tuple[dict[str, Any], str, list[tuple[str, str, str, list[Any]]]]], int] | None: ...

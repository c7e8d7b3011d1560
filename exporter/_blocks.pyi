from typing import Any

STRING: int
LC_STRING: int
UINT8: int
UINT16: int
UINT32: int
UINT64: int
INT64: int
FLOAT64: int
ARRAY: int
MAP: int

def native_block(columns: tuple[tuple[bytes, Any], ...], rows: list[Any], /) -> bytes: ...

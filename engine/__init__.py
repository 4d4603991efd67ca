"""pbx-engine: an open-source cloud PBX on asyncio/uvloop."""

__version__ = "0.1.0"

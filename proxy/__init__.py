"""The asyncio HTTP/1.1 forwarding engine (``proxy.engine``, pure core in ``proxy.core``) and
the front proxy built on it (``python -m proxy``). No Django import anywhere under here."""

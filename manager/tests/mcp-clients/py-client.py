"""The official MCP Python SDK's client against skep's gateway, for
manager/tests/mcp.rs: initialize, list, and a call to two servers, printed as
one JSON line. Usage:
    python3 py-client.py stdio SKEP CONFIG
    python3 py-client.py http URL TOKEN
stdio servers are spawned the SDK's way, with its default environment only.
"""

import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def scenario(read, write):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        tools = await session.list_tools()
        who = await session.call_tool("state__whoami", {})
        fs = await session.call_tool("fs__list_allowed_directories", {})
        return {
            "server": init.server_info.name,
            "tools": sorted(t.name for t in tools.tools),
            "who": json.loads(text(who)),
            "fs": text(fs),
        }


async def main(transport, target, extra):
    if transport == "stdio":
        params = StdioServerParameters(command=target, args=["mcp", "--config", extra])
        async with stdio_client(params) as (read, write):
            return await scenario(read, write)
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {extra}"})
    async with client, streamable_http_client(target, http_client=client) as streams:
        return await scenario(streams[0], streams[1])


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, *sys.argv[1:4])), flush=True)

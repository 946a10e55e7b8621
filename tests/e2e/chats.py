"""A family member's chats through Open WebUI's own API: the measure of "nothing lost".

Bodies follow Open WebUI 0.12.4's source (open_webui/routers/chats.py, models/chats.py):
POST /api/v1/chats/new takes a ChatForm ({"chat": {...}}) whose `chat` is the frontend's
shape, a message tree under `history` plus the flat `messages` list; GET /api/v1/chats/{id}
returns a ChatResponse."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

TIMEOUT = 30


def signin(url: str, email: str, password: str) -> str:
    """Sign in with email and password; the bearer token."""
    response = httpx.post(f"{url}/api/v1/auths/signin", timeout=TIMEOUT,
                          json={"email": email, "password": password})
    response.raise_for_status()
    return str(response.json()["token"])


def add_user(url: str, admin_token: str, name: str, email: str, password: str) -> None:
    """An account made by the admin (POST /api/v1/auths/add, role user)."""
    response = httpx.post(f"{url}/api/v1/auths/add", timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {admin_token}"},
                          json={"name": name, "email": email, "password": password,
                                "role": "user"})
    response.raise_for_status()


def chat_body(title: str, messages: list[dict[str, str]], model: str = "") -> dict[str, Any]:
    """The frontend's chat document: each message a node linked to its parent."""
    nodes: dict[str, dict[str, Any]] = {}
    flat: list[dict[str, Any]] = []
    parent: str | None = None
    for message in messages:
        node_id = str(uuid.uuid4())
        node = {"id": node_id, "parentId": parent, "childrenIds": [],
                "role": message["role"], "content": message["content"], "timestamp": 0}
        if message["role"] == "assistant":
            node["model"] = model
        if parent is not None:
            nodes[parent]["childrenIds"].append(node_id)
        nodes[node_id] = node
        flat.append(dict(node))
        parent = node_id
    return {"title": title, "models": [model] if model else [], "params": {},
            "history": {"messages": nodes, "currentId": parent}, "messages": flat,
            "tags": [], "timestamp": 0}


def create_chat(url: str, token: str, title: str, messages: list[dict[str, str]]) -> str:
    """Store a chat of `messages` ({"role", "content"} each); its id."""
    response = httpx.post(f"{url}/api/v1/chats/new", timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"chat": chat_body(title, messages)})
    response.raise_for_status()
    return str(response.json()["id"])


def read_chat(url: str, token: str, chat_id: str) -> dict[str, Any]:
    """The chat as Open WebUI serves it back (ChatResponse)."""
    response = httpx.get(f"{url}/api/v1/chats/{chat_id}", timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return dict(response.json())


def spoken(chat: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of a read chat's messages along its current branch, in order."""
    nodes = chat["chat"]["history"]["messages"]
    branch: list[tuple[str, str]] = []
    node_id = chat["chat"]["history"]["currentId"]
    while node_id is not None:
        branch.append((nodes[node_id]["role"], nodes[node_id]["content"]))
        node_id = nodes[node_id]["parentId"]
    return branch[::-1]

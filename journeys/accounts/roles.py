"""Staff roles and what each may do: viewer < operator < designer < admin.

The console checks `role.allows(permission)` server-side before every action (a hidden button is
not a check). Each role may do everything the roles below it may."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    READ = "read"  # journeys, instances, messages, replies, opt-outs
    TRIGGER = "trigger"  # start journeys, trigger subflows
    CANCEL = "cancel"
    HANDLE_REPLIES = "handle_replies"
    MANAGE_OPT_OUTS = "manage_opt_outs"
    PUBLISH = "publish"  # journey definitions
    MANAGE_USERS = "manage_users"
    MANAGE_TOKENS = "manage_tokens"
    MANAGE_CHANNELS = "manage_channels"
    MANAGE_WEBHOOKS = "manage_webhooks"
    MANAGE_APIS = "manage_apis"  # registered APIs (http_request's clinic systems)
    READ_AUDIT = "read_audit"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    DESIGNER = "designer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank

    def allows(self, permission: Permission) -> bool:
        return self.at_least(MINIMUM_ROLE[permission])

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text` (any case); ValueError naming the roles otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown role {text!r} (one of: {known})") from None


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.DESIGNER: 2, Role.ADMIN: 3}

MINIMUM_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.TRIGGER: Role.OPERATOR,
    Permission.CANCEL: Role.OPERATOR,
    Permission.HANDLE_REPLIES: Role.OPERATOR,
    Permission.MANAGE_OPT_OUTS: Role.OPERATOR,
    Permission.PUBLISH: Role.DESIGNER,
    Permission.MANAGE_USERS: Role.ADMIN,
    Permission.MANAGE_TOKENS: Role.ADMIN,
    Permission.MANAGE_CHANNELS: Role.ADMIN,
    Permission.MANAGE_WEBHOOKS: Role.ADMIN,
    Permission.MANAGE_APIS: Role.ADMIN,
    Permission.READ_AUDIT: Role.ADMIN,
}

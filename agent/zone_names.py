"""The pattern of a zone's name (a leaf module: the camera config, the query registry and the API
check names with it without importing the zones' geometry and their users)."""

ZONE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

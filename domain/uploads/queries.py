"""The JSON views of uploads, rendered by PostgreSQL on the raw pool (as the workflow reads are).

An unfinished upload past its `expires_at` shows as `expired` at once, before the periodic job removes its bytes.
The shapes must match `schemas.UploadOut` and `schemas.UploadPage`.
"""

from __future__ import annotations

from domain.pagination import page_statement

_UPLOAD_JSON = """json_build_object(
    'id', u.id, 'filename', u.filename, 'size', u.length, 'offset', u.upload_offset,
    'status', CASE WHEN u.status = 'uploading' AND u.expires_at <= now() THEN 'expired' ELSE u.status END,
    'rows', u.rows, 'periods', u.periods, 'error', u.error,
    'created_at', roi_timestamp(u.created_at), 'expires_at', roi_timestamp(u.expires_at)
)"""

UPLOAD_DETAIL = f"SELECT {_UPLOAD_JSON} FROM uploads u WHERE u.id = $1 AND u.owner_id = $2"

_TOTAL = "SELECT coalesce((SELECT c.n FROM upload_counts c WHERE c.owner_id = $1), 0)::bigint AS total"
_ITEMS = f"""
SELECT {_UPLOAD_JSON} AS item, u.created_at, u.id FROM uploads u WHERE u.owner_id = $1 {{condition}}
ORDER BY u.created_at DESC, u.id DESC LIMIT $2 OFFSET $3"""

# A page: $1 owner, $2 the page's size plus one, $3 offset; then the cursor's position.
UPLOAD_PAGE = page_statement(_TOTAL, _ITEMS.format(condition=""))
UPLOAD_PAGE_AFTER = page_statement(_TOTAL, _ITEMS.format(condition="AND (u.created_at, u.id) < ($4, $5)"))

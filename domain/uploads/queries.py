"""The JSON views of uploads, rendered by PostgreSQL on the raw pool (as the workflow reads are).

An unfinished upload past its `expires_at` shows as `expired` at once, before the periodic job removes its bytes.
The shapes must match `schemas.UploadOut` and `schemas.UploadPage`.
"""

from __future__ import annotations

_UPLOAD_JSON = """json_build_object(
    'id', u.id, 'filename', u.filename, 'size', u.length, 'offset', u.upload_offset,
    'status', CASE WHEN u.status = 'uploading' AND u.expires_at <= now() THEN 'expired' ELSE u.status END,
    'rows', u.rows, 'periods', u.periods, 'error', u.error,
    'created_at', roi_timestamp(u.created_at), 'expires_at', roi_timestamp(u.expires_at)
)"""

UPLOAD_DETAIL = f"SELECT {_UPLOAD_JSON} FROM uploads u WHERE u.id = $1 AND u.owner_id = $2"

UPLOAD_PAGE = f"""
SELECT json_build_object(
    'items', coalesce((
        SELECT json_agg({_UPLOAD_JSON} ORDER BY u.created_at DESC)
        FROM (
            SELECT * FROM uploads u WHERE u.owner_id = $1 ORDER BY u.created_at DESC LIMIT $2 OFFSET $3
        ) u
    ), '[]'::json),
    'total', (SELECT count(*) FROM uploads u WHERE u.owner_id = $1),
    'limit', $2::int, 'offset', $3::int
)"""

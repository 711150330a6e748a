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
SELECT {_UPLOAD_JSON} AS item FROM uploads u WHERE u.owner_id = $1 {{condition}}
ORDER BY u.created_at DESC, u.id DESC LIMIT $2 OFFSET $3"""

# A page: $1 owner, $2 the page's size plus one, $3 offset; then the cursor's position.
UPLOAD_PAGE = page_statement(_TOTAL, _ITEMS.format(condition=""))
UPLOAD_PAGE_AFTER = page_statement(_TOTAL, _ITEMS.format(condition="AND (u.created_at, u.id) < ($4, $5)"))

# The offset of record and the append lease (`repository.UploadRepository`).
CREATE = """
INSERT INTO uploads (id, owner_id, length, upload_offset, filename, filetype, tus_metadata, status, expires_at,
                     created_at, updated_at)
VALUES ($1, $2, $3::bigint, 0, $4, $5, $6, CASE WHEN $3::bigint > 0 THEN 'uploading' ELSE 'processing' END,
        CASE WHEN $3::bigint > 0 THEN now() + $7::interval END, now(), now())
RETURNING expires_at"""

HEAD = """
SELECT length, upload_offset, status, tus_metadata, expires_at, filename,
       status = 'expired' OR (status = 'uploading' AND expires_at <= now()) AS lapsed
FROM uploads WHERE id = $1 AND owner_id = $2"""

ACQUIRE = """
UPDATE uploads SET lease_token = $4, lease_expires_at = now() + $5::interval
WHERE id = $1 AND owner_id = $2 AND upload_offset = $3::bigint AND status = 'uploading' AND expires_at > now()
  AND (lease_expires_at IS NULL OR lease_expires_at < now())
RETURNING length"""

RENEW = """
UPDATE uploads SET upload_offset = $3::bigint, lease_expires_at = now() + $4::interval, updated_at = now()
WHERE id = $1 AND lease_token = $2"""

RELEASE = """
UPDATE uploads SET upload_offset = $3::bigint, lease_token = NULL, lease_expires_at = NULL, updated_at = now(),
    status = CASE WHEN $3::bigint = length THEN 'processing' ELSE 'uploading' END,
    expires_at = CASE WHEN $3::bigint = length THEN NULL ELSE now() + $4::interval END
WHERE id = $1 AND lease_token = $2
RETURNING status, upload_offset, expires_at"""

DELETE = "DELETE FROM uploads WHERE id = $1 AND owner_id = $2"

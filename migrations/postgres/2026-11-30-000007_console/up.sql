-- The editor console: sessions end when the password changes (session_version), failed logins
-- are counted per account and per address (login_failures), issues can wait for a time
-- (send_at on a draft) and keep who made them.
ALTER TABLE editors ADD COLUMN session_version INTEGER NOT NULL DEFAULT 1;
CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    failed_at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, failed_at);
ALTER TABLE issues ADD COLUMN send_at TIMESTAMP;
ALTER TABLE issues ADD COLUMN created_by TEXT;
CREATE INDEX issues_due ON issues (status, send_at);

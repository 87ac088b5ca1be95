-- Editors' accounts and API trust (issue 14).
--
-- Roles: author (drafts, previews, test copies), editor (also sends, schedules, runs the digest,
-- manages subscribers and articles), admin (also accounts, API tokens, webhooks, settings).
-- Accounts made before roles: the oldest is the admin, the others editors.
ALTER TABLE editors ADD COLUMN role TEXT NOT NULL DEFAULT 'editor'
    CHECK (role IN ('author', 'editor', 'admin'));
UPDATE editors SET role = 'admin' WHERE id = (SELECT MIN(id) FROM editors);
-- A disabled account cannot log in, and its sessions end.
ALTER TABLE editors ADD COLUMN disabled_at TIMESTAMP;
-- The second factor: a TOTP secret (sealed with a key derived from the secret key), when it was
-- enrolled, and the last time step used (a code is accepted once).
ALTER TABLE editors ADD COLUMN totp_secret TEXT;
ALTER TABLE editors ADD COLUMN totp_enrolled_at TIMESTAMP;
ALTER TABLE editors ADD COLUMN totp_last_step BIGINT;

-- Ten single-use recovery codes per enrolment, kept as hashes.
CREATE TABLE recovery_codes (
    id BIGSERIAL PRIMARY KEY,
    editor_id BIGINT NOT NULL REFERENCES editors (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX recovery_codes_editor ON recovery_codes (editor_id);

-- Console sessions, server-side: the cookie holds a random token whose hash is kept here. A
-- session ends when its row goes (logout, revocation, password change, disabled account), after
-- 2 hours idle, or 12 hours after the login. `pending`: NULL for a full session, or what the
-- editor must do first ('code': give a second-factor code, 'enrol': enrol a second factor).
CREATE TABLE editor_sessions (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    editor_id BIGINT NOT NULL REFERENCES editors (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    pending TEXT
);
CREATE INDEX editor_sessions_editor ON editor_sessions (editor_id);

-- Devices an editor has logged in from (a long-lived cookie holds a random token whose hash is
-- kept here): a login from one is counted apart from the account's failures, so that an attacker
-- who locks the account name cannot lock its editor out.
CREATE TABLE known_devices (
    id BIGSERIAL PRIMARY KEY,
    editor_id BIGINT NOT NULL REFERENCES editors (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP NOT NULL
);
CREATE INDEX known_devices_editor ON known_devices (editor_id);

-- API tokens' scopes (comma-separated; NULL: a token made before scopes, with full access), an
-- optional expiry, and who made it.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMP;
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;

-- Who did what, when, from where: logins, second-factor and role changes, sends, schedules,
-- test copies, digest runs and skips, exports, imports, erasures, tokens. Kept for
-- IRIA_AUDIT_RETENTION_DAYS.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, at);

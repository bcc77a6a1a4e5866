-- Sessions of one sign-in across cookie scopes share a login id; the
-- provider's sid lets a back-channel logout end exactly its sessions.
ALTER TABLE sessions ADD COLUMN login_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN provider_sid TEXT;
CREATE INDEX sessions_by_login ON sessions (login_id);
CREATE INDEX sessions_by_provider_sid ON sessions (provider, provider_sid);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Short-lived single-use records (pending sign-ins by state, cross-domain
-- codes), keyed by a hash of the secret that names them.
CREATE TABLE single_use (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Sessions from before login ids each stand alone.
UPDATE sessions SET login_id = id_hash WHERE login_id = '';

-- Email + password accounts: the password is an identity (issuer `password`,
-- subject the lower-case email) whose hash lives here, one per customer.
CREATE TABLE credentials (
    customer_id   TEXT PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Single-use tokens mailed for email verification and password reset; only
-- their SHA-256 is kept. `email` is the address the mail went to.
CREATE TABLE account_tokens (
    token_hash  TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    email       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX account_tokens_by_customer ON account_tokens (customer_id, purpose);

-- Provider sign-ins look for an existing account with the same address.
CREATE INDEX customers_by_email ON customers (LOWER(email));

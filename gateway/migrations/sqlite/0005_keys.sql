-- Secrets every node of a deployment shares (the key of the guest-id MAC):
-- the first node to start writes one, every other node reads that one.
CREATE TABLE deployment_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The keys that sign identity assertions, one per rotation slot (a slot is
-- `identity.key_rotation` long). Whichever node first needs a slot's key
-- writes it; the others read it, so every node signs with the same key and
-- publishes the same key set.
CREATE TABLE signing_keys (
    slot        BIGINT PRIMARY KEY,
    kid         TEXT NOT NULL UNIQUE,
    private_pem TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

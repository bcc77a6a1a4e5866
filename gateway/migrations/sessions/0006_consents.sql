-- The purposes the customer has granted (JSON {purpose: version}), copied
-- from the consent ledger at sign-in and on every change, so enforcing a
-- route's consent rule is a lookup in the session.
ALTER TABLE sessions ADD COLUMN consents TEXT;

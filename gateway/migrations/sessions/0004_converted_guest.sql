-- The guest id a sign-in converted, told to the backend on the session's
-- first request (X-Previous-Guest-Id) and then cleared.
ALTER TABLE sessions ADD COLUMN converted_guest TEXT;

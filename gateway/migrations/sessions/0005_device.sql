-- What the browser that signed in calls itself (a short form of its
-- User-Agent), shown on the account page's list of sessions.
ALTER TABLE sessions ADD COLUMN device TEXT;

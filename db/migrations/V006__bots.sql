-- V006 (bots): chat platforms redeliver events (Slack retries unacknowledged ones, the
-- Discord gateway replays after a resume), so each delivered event id is claimed once here;
-- Spotify lookups are cached so a popular track costs one search, not one per reply.

CREATE TABLE bot_events (
    platform     text NOT NULL,
    event_id     text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, event_id)
);

CREATE TABLE spotify_lookups (
    lookup_key   text PRIMARY KEY,         -- 'id:…', 'isrc:…' or 'search:artist|title'
    spotify_id   text,                     -- NULL: looked up, not on Spotify
    looked_up_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX feedback_request_idx ON feedback (request_id);

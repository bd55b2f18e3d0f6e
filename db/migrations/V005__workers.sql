-- V005: workers. Fetched sources are cached by their normalised key (a song linked twice is
-- fetched and analysed once, until the entry expires), and each request keeps its stage timings
-- and how many deliveries it took, so queue behaviour can be audited from the database.

CREATE TABLE source_cache (
    source_key  text NOT NULL,            -- youtube:<id>, spotify:<id>, direct:<url>, upload:<sha256>
    kind        text NOT NULL,            -- 'analysis', 'spotify' (track metadata)
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (source_key, kind)
);
CREATE INDEX source_cache_expiry_idx ON source_cache (expires_at);

ALTER TABLE requests
    ADD COLUMN timings   jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN attempts  integer NOT NULL DEFAULT 0,
    ADD COLUMN source_key text;

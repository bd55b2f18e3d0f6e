-- V001: the catalog, its analyses, DJ mixes, requests with their recommendations,
-- feedback from reactions and model versions: everything the first release needs.
-- Later migrations are reserved by area: V002 identify, V003 embedding, V004 mixes/ALS,
-- V005 workers, V006 bots.

CREATE TABLE tracks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- sha256 of the file's bytes; NULL for stubs known only from mix histories
    content_hash  text UNIQUE,
    title         text NOT NULL,
    artist        text NOT NULL DEFAULT '',
    album         text NOT NULL DEFAULT '',
    genre         text NOT NULL DEFAULT '',
    duration_s    real,
    path          text,          -- local file path or source URI
    spotify_id    text,
    isrc          text,
    source        text NOT NULL DEFAULT 'library',
    added_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracks_isrc_idx ON tracks (isrc) WHERE isrc IS NOT NULL;
CREATE INDEX tracks_spotify_idx ON tracks (spotify_id) WHERE spotify_id IS NOT NULL;
CREATE INDEX tracks_artist_title_idx ON tracks (lower(artist), lower(title));

CREATE TABLE analyses (
    track_id          bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    analyzer_version  text NOT NULL,
    bpm               real NOT NULL,
    bpm_alternates    real[] NOT NULL DEFAULT '{}',
    bpm_confidence    real NOT NULL DEFAULT 0,
    key               text NOT NULL,
    camelot           text NOT NULL,
    open_key          text NOT NULL,
    key_confidence    real NOT NULL DEFAULT 0,
    key_changes       boolean NOT NULL DEFAULT false,
    energy            smallint NOT NULL CHECK (energy BETWEEN 1 AND 10),
    loudness_lufs     real,
    analyzed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (track_id, analyzer_version)
);
CREATE INDEX analyses_bpm_idx ON analyses (bpm);
CREATE INDEX analyses_camelot_idx ON analyses (camelot);

CREATE TABLE track_vectors (
    track_id       bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    model_version  text NOT NULL,
    vector         real[] NOT NULL,
    PRIMARY KEY (track_id, model_version)
);

CREATE TABLE mixes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,            -- file or service it was imported from
    external_id  text NOT NULL,            -- the mix id within that source
    title        text NOT NULL DEFAULT '',
    dj           text NOT NULL DEFAULT '',
    imported_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);

CREATE TABLE mix_tracks (
    mix_id    bigint NOT NULL REFERENCES mixes (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    track_id  bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    PRIMARY KEY (mix_id, position)
);
CREATE INDEX mix_tracks_track_idx ON mix_tracks (track_id);

CREATE TABLE track_relations (
    track_id    bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    related_id  bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    kind        text NOT NULL,             -- 'samples'
    PRIMARY KEY (track_id, related_id, kind)
);

CREATE TABLE requests (
    id              uuid PRIMARY KEY,
    platform        text NOT NULL,         -- cli, discord, slack
    place           text NOT NULL DEFAULT '',  -- guild/channel or workspace/channel
    user_id         text NOT NULL DEFAULT '',
    input_kind      text NOT NULL,         -- link, upload, file
    input_ref       text NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'queued',
    error           text,
    identified_track_id bigint REFERENCES tracks (id) ON DELETE SET NULL,
    query           jsonb,                 -- analysis of the input
    reply_ref       text,                  -- platform message id of the reply, for reactions
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX requests_reply_idx ON requests (platform, reply_ref) WHERE reply_ref IS NOT NULL;
CREATE INDEX requests_user_idx ON requests (platform, user_id, created_at);

CREATE TABLE recommendations (
    request_id  uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    rank        integer NOT NULL,
    track_id    bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    score       real NOT NULL,
    components  jsonb NOT NULL DEFAULT '{}',
    reasons     text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (request_id, rank)
);

CREATE TABLE feedback (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    track_id    bigint REFERENCES tracks (id) ON DELETE CASCADE,  -- NULL: the whole reply
    user_id     text NOT NULL,
    platform    text NOT NULL,
    reaction    text NOT NULL,
    value       smallint NOT NULL,         -- +1, -1, +2 ...
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- a replayed event (Slack retries, gateway resumes) must not count twice
CREATE UNIQUE INDEX feedback_once_idx
    ON feedback (platform, request_id, user_id, reaction, coalesce(track_id, 0));

CREATE TABLE model_versions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL,          -- embedder, annoy, als, fingerprints
    version        text NOT NULL,
    artifact_path  text NOT NULL,
    metrics        jsonb NOT NULL DEFAULT '{}',
    active         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, version)
);
CREATE UNIQUE INDEX model_versions_one_active_idx ON model_versions (kind) WHERE active;

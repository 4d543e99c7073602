-- A/B experiments and progressive rollout (cairn.ops.experiments).
--
-- An experiment has variants; a variant overrides any of the prompt template, the retrieval profile
-- and the generator tier of the answers given to the users assigned to it. Who is assigned is not
-- stored: it is a hash of the user and the experiment's salt (cairn.ops.experiments.assign), so
-- every replica computes the same assignment without a write per request. What is stored is what an
-- administrator decided: variants and weights (fixed once the experiment left the draft state, so
-- nobody changes variant mid-experiment), rollout percentage, pilot groups and status, with every
-- change kept in experiment_changes.
--
-- Scope: an experiment applies to the requests that search exactly one knowledge base (scope = its
-- name) or to every request ('*'). At most one experiment per scope runs at a time (the partial unique
-- index); where a knowledge-base experiment and a '*' experiment both run, the knowledge base's wins
-- for requests on it (the rule lives in ExperimentStore.running_for).

CREATE TABLE experiments (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    salt        text NOT NULL CHECK (length(salt) BETWEEN 1 AND 128),
    scope       text NOT NULL DEFAULT '*' CHECK (scope = '*' OR scope ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'running', 'paused', 'stopped')),
    rollout     numeric(5, 2) NOT NULL DEFAULT 0 CHECK (rollout >= 0 AND rollout <= 100),
    groups      text[] NOT NULL DEFAULT '{}',  -- pilot groups; empty: every user
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,                    -- first start
    stopped_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'draft' OR started_at IS NOT NULL OR status = 'stopped'),
    CHECK ((status = 'stopped') = (stopped_at IS NOT NULL))
);
CREATE UNIQUE INDEX experiments_one_running_per_scope ON experiments (scope) WHERE status = 'running';

-- position 0 is the control: the baseline every other variant is tested against.
CREATE TABLE experiment_variants (
    experiment_id int NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$'),
    position      int NOT NULL CHECK (position >= 0),
    weight        real NOT NULL CHECK (weight > 0),
    template      text,  -- a prompt template version (cairn.answer.templates)
    profile       text CHECK (profile IN ('fast', 'default', 'quality')),
    tier          text,  -- a configured generator tier
    PRIMARY KEY (experiment_id, name),
    UNIQUE (experiment_id, position)
);

CREATE TABLE experiment_changes (
    id            bigserial PRIMARY KEY,
    experiment_id int NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    principal     text NOT NULL,
    action        text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX experiment_changes_experiment_idx ON experiment_changes (experiment_id, id);

-- `cairn experiments report` reads the answers of an experiment's variants by their label.
CREATE INDEX audit_log_variant_idx ON audit_log ((record ->> 'variant')) WHERE record ->> 'variant' IS NOT NULL;

-- Row-level security. Assignment happens inside every answer, as the asking user: any identified
-- caller reads the running configuration (it holds no document data). Only administrators (and the
-- system scope) create or change experiments; variants cannot change after the draft state, which
-- the trigger below enforces for everyone, the owner included.
ALTER TABLE experiments ENABLE ROW LEVEL SECURITY;
ALTER TABLE experiments FORCE ROW LEVEL SECURITY;
CREATE POLICY experiments_read ON experiments FOR SELECT USING (cairn_is_system() OR cairn_user_id() IS NOT NULL);
CREATE POLICY experiments_admin ON experiments FOR ALL USING (cairn_is_admin()) WITH CHECK (cairn_is_admin());

ALTER TABLE experiment_variants ENABLE ROW LEVEL SECURITY;
ALTER TABLE experiment_variants FORCE ROW LEVEL SECURITY;
CREATE POLICY experiment_variants_read ON experiment_variants FOR SELECT
    USING (cairn_is_system() OR cairn_user_id() IS NOT NULL);
CREATE POLICY experiment_variants_admin ON experiment_variants FOR ALL
    USING (cairn_is_admin()) WITH CHECK (cairn_is_admin());

ALTER TABLE experiment_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE experiment_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY experiment_changes_admin ON experiment_changes FOR ALL
    USING (cairn_is_admin()) WITH CHECK (cairn_is_admin());

CREATE FUNCTION cairn_experiment_variants_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    state text;
BEGIN
    SELECT e.status INTO state FROM experiments e
     WHERE e.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.experiment_id ELSE NEW.experiment_id END;
    IF state IS NOT NULL AND state <> 'draft' THEN
        RAISE EXCEPTION 'the variants of an experiment that has started cannot change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER experiment_variants_frozen BEFORE INSERT OR UPDATE OR DELETE ON experiment_variants
    FOR EACH ROW EXECUTE FUNCTION cairn_experiment_variants_frozen();

-- m002 granted on the tables that existed then; these are granted one by one.
GRANT SELECT, INSERT, UPDATE, DELETE ON experiments, experiment_variants TO cairn_app;
GRANT SELECT, INSERT ON experiment_changes TO cairn_app;
GRANT USAGE, SELECT ON SEQUENCE experiments_id_seq, experiment_changes_id_seq TO cairn_app;

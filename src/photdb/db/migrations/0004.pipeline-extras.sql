-- photdb 0004: reference-set bookkeeping for the crowded-field pipeline.
-- depends: 0002.pipeline-schema
--
-- A reference set is what `photdb reference` chose for one filter: a primary
-- exposure whose chips carry the reference catalogues (galsources rows with
-- ref_id NULL), plus the other member exposures. kind 'single': one exposure;
-- 'set': several, the others forced at the primary's positions and combined
-- (median); 'stack': the primary is a stacked exposure (observations.type =
-- 'stack') built from the members. One active set per filter; marking new
-- references deactivates the old set (search images already processed keep
-- the reference they were forced at, recorded in galimages.reference).

CREATE TABLE galrefsets (
    id serial PRIMARY KEY,
    filter varchar(16) NOT NULL,
    kind varchar(8) NOT NULL CHECK (kind IN ('single', 'set', 'stack')),
    primary_exposure_id integer NOT NULL REFERENCES galexposures (id) ON DELETE CASCADE,
    member_exposure_ids integer[] NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE galrefsets IS 'reference exposures per filter: primary (catalogue) and members';
CREATE UNIQUE INDEX galrefsets_active_filter_idx ON galrefsets (filter) WHERE active;

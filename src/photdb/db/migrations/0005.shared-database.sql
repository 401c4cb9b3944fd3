-- photdb 0005: a shared database (many writers and readers at once).
-- depends: 0001.archive-schema 0004.pipeline-extras
--
-- * photdb_schema: which migrations are applied, readable by every role (yoyo's
--   own tables are the admin role's alone; ordinary commands read this view to
--   ask for `photdb db init` when the database is older than their code).
-- * A light-curve point is identified by what it is: (object, time, band, data
--   source, observation). Duplicates the old loader stored are removed (the
--   first of each is kept, with its metadata) and a unique index keeps them out.
-- * lightcurves' references are checked once per statement instead of once per
--   row (10^6-point loads spent two thirds of their time in per-row foreign-key
--   checks): the same guarantees -- a point cannot name a missing object, data
--   source, band or observation, referenced rows are locked FOR KEY SHARE, and
--   deleting an object, data source or observation deletes its points -- by
--   statement-level triggers with transition tables, as galsources does.
-- * Columns that cut real FITS values are widened to the longest single-card
--   FITS string (68 characters): observations.mode/band, photosys.band,
--   galexposures.filter, galimages.extname, telescope/instrument/observatory
--   names. observations.ingest_notes keeps what ingest could not use, and why.
-- * objects.auid and objects.aavso_label keep AAVSO identifiers and chart labels.
-- * galimages (galexposure_id, hdu) is unique: concurrent ingests cannot store an
--   HDU twice.

CREATE VIEW photdb_schema AS
    SELECT DISTINCT migration_id, applied_at_utc FROM _yoyo_migration;
COMMENT ON VIEW photdb_schema IS 'applied migrations (read-only for every role)';

-- ---------------------------------------------------------------- wider columns
ALTER TABLE observations ALTER COLUMN mode TYPE varchar(68);
ALTER TABLE observations ALTER COLUMN band TYPE varchar(68);
ALTER TABLE observations ADD COLUMN ingest_notes text[];
COMMENT ON COLUMN observations.ingest_notes IS
    'what ingest could not use from the header and why (values left NULL, kept whole, ...)';
ALTER TABLE photosys ALTER COLUMN band TYPE varchar(68);
ALTER TABLE galexposures ALTER COLUMN filter TYPE varchar(68);
ALTER TABLE galimages ALTER COLUMN extname TYPE varchar(68);
ALTER TABLE telescopes ALTER COLUMN name TYPE varchar(68);
ALTER TABLE instruments ALTER COLUMN name TYPE varchar(68);
ALTER TABLE observatories ALTER COLUMN name TYPE varchar(68);

-- an HDU of a file is one image, once (ingest may add back an HDU deleted from a file)
CREATE UNIQUE INDEX galimages_exposure_hdu_key ON galimages (galexposure_id, hdu);

-- ---------------------------------------------------------------- AAVSO identifiers
ALTER TABLE objects ADD COLUMN auid varchar(32);
ALTER TABLE objects ADD COLUMN aavso_label varchar(32);
COMMENT ON COLUMN objects.auid IS 'AAVSO unique identifier (AUID), e.g. 000-BBQ-208';
COMMENT ON COLUMN objects.aavso_label IS 'label of the star on AAVSO charts (comparison stars)';
CREATE UNIQUE INDEX objects_auid_key ON objects (auid) WHERE auid IS NOT NULL;
-- every name an object is looked up by has an index (one lookup per name, not a scan);
-- partial, so the many objects without that name cost nothing on insert
DROP INDEX objects_simbad_name_idx;
DROP INDEX objects_vsx_name_idx;
CREATE INDEX objects_simbad_name_idx ON objects (lower(simbad_name)) WHERE simbad_name IS NOT NULL;
CREATE INDEX objects_vsx_name_idx ON objects (lower(vsx_name)) WHERE vsx_name IS NOT NULL;
CREATE INDEX objects_ucac4_name_idx ON objects (lower(ucac4_name)) WHERE ucac4_name IS NOT NULL;
CREATE INDEX objects_apass_name_idx ON objects (lower(apass_name)) WHERE apass_name IS NOT NULL;
CREATE INDEX objects_auid_lower_idx ON objects (lower(auid)) WHERE auid IS NOT NULL;

-- ---------------------------------------------------------------- one point once
DELETE FROM lightcurves l
USING lightcurves k
WHERE k.object_id = l.object_id
  AND k.dateobs = l.dateobs
  AND k.photosys_id IS NOT DISTINCT FROM l.photosys_id
  AND k.datasource_id IS NOT DISTINCT FROM l.datasource_id
  AND k.observation_id IS NOT DISTINCT FROM l.observation_id
  AND k.id < l.id;
CREATE UNIQUE INDEX lightcurves_point_key
    ON lightcurves (object_id, dateobs, photosys_id, datasource_id, observation_id)
    NULLS NOT DISTINCT;
DROP INDEX lightcurves_object_idx;  -- the unique index leads with (object_id, dateobs)
DROP INDEX lightcurves_observation_idx;
CREATE INDEX lightcurves_observation_idx ON lightcurves (observation_id)
    WHERE observation_id IS NOT NULL;

-- ---------------------------------------------------------------- references per statement
ALTER TABLE lightcurves
    DROP CONSTRAINT lightcurves_object_id_fkey,
    DROP CONSTRAINT lightcurves_datasource_id_fkey,
    DROP CONSTRAINT lightcurves_photosys_id_fkey,
    DROP CONSTRAINT lightcurves_observation_id_fkey;

CREATE FUNCTION lightcurves_check_references() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    -- lock what the new points refer to, as a foreign key does, then check
    PERFORM 1 FROM objects WHERE id IN (SELECT object_id FROM new_points)
        ORDER BY id FOR KEY SHARE;
    PERFORM 1 FROM datasources WHERE id IN (SELECT datasource_id FROM new_points)
        ORDER BY id FOR KEY SHARE;
    PERFORM 1 FROM photosys WHERE id IN (SELECT photosys_id FROM new_points)
        ORDER BY id FOR KEY SHARE;
    PERFORM 1 FROM observations WHERE id IN (SELECT observation_id FROM new_points)
        ORDER BY id FOR KEY SHARE;
    SELECT format('object_id %s', n.object_id) INTO missing
        FROM (SELECT DISTINCT object_id FROM new_points) n
        WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = n.object_id) LIMIT 1;
    IF missing IS NULL THEN
        SELECT format('datasource_id %s', n.datasource_id) INTO missing
            FROM (SELECT DISTINCT datasource_id FROM new_points WHERE datasource_id IS NOT NULL) n
            WHERE NOT EXISTS (SELECT 1 FROM datasources d WHERE d.id = n.datasource_id) LIMIT 1;
    END IF;
    IF missing IS NULL THEN
        SELECT format('photosys_id %s', n.photosys_id) INTO missing
            FROM (SELECT DISTINCT photosys_id FROM new_points WHERE photosys_id IS NOT NULL) n
            WHERE NOT EXISTS (SELECT 1 FROM photosys p WHERE p.id = n.photosys_id) LIMIT 1;
    END IF;
    IF missing IS NULL THEN
        SELECT format('observation_id %s', n.observation_id) INTO missing
            FROM (SELECT DISTINCT observation_id FROM new_points
                  WHERE observation_id IS NOT NULL) n
            WHERE NOT EXISTS (SELECT 1 FROM observations b WHERE b.id = n.observation_id)
            LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'lightcurves: % does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER lightcurves_references_insert AFTER INSERT ON lightcurves
    REFERENCING NEW TABLE AS new_points
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_check_references();
CREATE TRIGGER lightcurves_references_update AFTER UPDATE ON lightcurves
    REFERENCING NEW TABLE AS new_points
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_check_references();

-- deleting an object, data source or observation deletes its points (ON DELETE CASCADE)
CREATE FUNCTION lightcurves_cascade_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM lightcurves WHERE %I IN (SELECT id FROM gone)', TG_ARGV[0]);
    RETURN NULL;
END
$$;
CREATE TRIGGER objects_delete_points AFTER DELETE ON objects
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_cascade_delete('object_id');
CREATE TRIGGER datasources_delete_points AFTER DELETE ON datasources
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_cascade_delete('datasource_id');
CREATE TRIGGER observations_delete_points AFTER DELETE ON observations
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_cascade_delete('observation_id');

-- a band in use cannot be deleted (ON DELETE NO ACTION)
CREATE FUNCTION photosys_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    used integer;
BEGIN
    SELECT g.id INTO used FROM gone g
        WHERE EXISTS (SELECT 1 FROM lightcurves l WHERE l.photosys_id = g.id) LIMIT 1;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'photosys %: light-curve points still refer to it', used
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER photosys_refuse_delete AFTER DELETE ON photosys
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION photosys_refuse_delete();

-- referenced ids never change, and referenced tables are not truncated under the points
CREATE FUNCTION lightcurves_refuse_parent_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT 1 FROM lightcurves) THEN
            RAISE EXCEPTION 'cannot truncate %: light-curve points refer to it', TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'cannot change %.id: light-curve points may refer to it', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END
$$;
CREATE TRIGGER objects_keep_id BEFORE UPDATE OF id ON objects
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER datasources_keep_id BEFORE UPDATE OF id ON datasources
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER photosys_keep_id BEFORE UPDATE OF id ON photosys
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER observations_keep_id BEFORE UPDATE OF id ON observations
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER objects_no_truncate BEFORE TRUNCATE ON objects
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER datasources_no_truncate BEFORE TRUNCATE ON datasources
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER photosys_no_truncate BEFORE TRUNCATE ON photosys
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_refuse_parent_change();
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations
    FOR EACH STATEMENT EXECUTE FUNCTION lightcurves_refuse_parent_change();

-- photdb 0010: variability statistics per reference source, kept up to date.
-- depends: 0005.shared-database
--
-- One row per reference source (a galsources row with ref_id NULL) that has
-- been forced on at least one search image. The running sums (see
-- photdb.varstats) are updated in the transaction that stores each search
-- image, in refsource_id order (concurrent writers never deadlock); the
-- statistics users rank by are stored beside them so the candidate list is an
-- index scan, not a pass over galsources. `photdb stats rebuild` recomputes
-- every row from galsources (needed once on a database that processed search
-- images before this migration, and after deleting exposures).
-- d = mag - ref_mag of a forced point; w = 1/magerr^2.

CREATE TABLE galrefstats (
    refsource_id bigint PRIMARY KEY,
    reference_image integer NOT NULL,
    filter varchar(68),
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    ref_mag double precision,  -- NULL: a new source the reference does not show
    ref_magerr double precision,
    -- running sums
    n_epochs integer NOT NULL DEFAULT 0,
    n_det integer NOT NULL DEFAULT 0,
    sum_w double precision NOT NULL DEFAULT 0,
    sum_wd double precision NOT NULL DEFAULT 0,
    sum_wd2 double precision NOT NULL DEFAULT 0,
    sum_d double precision NOT NULL DEFAULT 0,
    sum_d2 double precision NOT NULL DEFAULT 0,
    sum_dd2 double precision NOT NULL DEFAULT 0,
    sum_j double precision NOT NULL DEFAULT 0,
    d_min double precision,
    d_max double precision,
    first_mjd double precision,
    first_image integer,
    first_d double precision,
    first_e double precision,
    last_mjd double precision,
    last_image integer,
    last_d double precision,
    last_e double precision,
    -- statistics (NULL where undefined)
    mean_mag real,
    mean_magerr real,
    chi2nu real,
    eta real,
    stetson_j real,
    amplitude real,
    max_sig real,
    ref_offset real,
    ref_offset_sigma real,
    ref_outlier boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
COMMENT ON TABLE galrefstats IS
    'per reference source: running sums of its forced points and the variability statistics from them';
COMMENT ON COLUMN galrefstats.stetson_j IS
    'Stetson J over consecutive epochs, deviations from the reference magnitude';
COMMENT ON COLUMN galrefstats.ref_outlier IS
    'search epochs agree with each other and all differ from the reference (ref_offset, ref_offset_sigma)';

-- the candidate list: detections first, then chi2/nu, then the strongest detection
CREATE INDEX galrefstats_rank_idx ON galrefstats
    (n_det DESC, chi2nu DESC NULLS LAST, max_sig DESC NULLS LAST, refsource_id)
    WHERE n_det > 0 AND NOT ref_outlier;
CREATE INDEX galrefstats_filter_rank_idx ON galrefstats
    (filter, n_det DESC, chi2nu DESC NULLS LAST, max_sig DESC NULLS LAST, refsource_id)
    WHERE n_det > 0 AND NOT ref_outlier;
CREATE INDEX galrefstats_outlier_idx ON galrefstats (abs(ref_offset_sigma) DESC, refsource_id)
    WHERE ref_outlier;
CREATE INDEX galrefstats_q3c_idx ON galrefstats (q3c_ang2ipix(ra, dec));

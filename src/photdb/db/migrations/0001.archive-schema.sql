-- photdb 0001: the photometry archive tables (small-telescope design document).
--
-- Column names and types follow the archive document so that its scripts and
-- queries run unchanged; additions are documented in the README (mjd beside
-- every timestamptz, wider file-name columns, nullable gaia_name).

CREATE EXTENSION IF NOT EXISTS q3c;
CREATE EXTENSION IF NOT EXISTS pg_sphere;

CREATE TABLE observatories (
    id serial PRIMARY KEY,
    name varchar(64) NOT NULL UNIQUE,
    longitude_deg double precision,
    latitude_deg double precision,
    altitude_m double precision,
    description text
);

CREATE TABLE telescopes (
    id serial PRIMARY KEY,
    name varchar(64) NOT NULL UNIQUE,
    observatory_id integer REFERENCES observatories (id) ON DELETE SET NULL,
    aperture_m double precision,
    focallen_mm double precision,
    description text
);

CREATE TABLE instruments (
    id serial PRIMARY KEY,
    name varchar(64) NOT NULL UNIQUE,
    detector varchar(64),
    naxis1 integer,
    naxis2 integer,
    pixsize_x_um double precision,
    pixsize_y_um double precision,
    gain_e_per_adu double precision,
    readnoise_e double precision,
    description text
);

CREATE TABLE photosys (
    id serial PRIMARY KEY,
    band varchar(16) NOT NULL UNIQUE,
    system varchar(32),
    lambda_eff_nm double precision,
    description text
);

CREATE TABLE datasources (
    id serial PRIMARY KEY,
    progid varchar(32) NOT NULL UNIQUE,
    observers text,
    processing text,
    publication text,
    copyright text,
    description text
);

CREATE TABLE objects (
    id serial PRIMARY KEY,
    coordequ spoint,
    gaia_name varchar(32),
    simbad_name varchar(32),
    class varchar(32),
    description varchar(32),
    ucac4_name varchar(32),
    apass_name varchar(32),
    vsx_name varchar(32),
    id_arch integer
);
CREATE UNIQUE INDEX objects_gaia_name_key ON objects (gaia_name) WHERE gaia_name IS NOT NULL;
CREATE INDEX objects_coordequ_idx ON objects USING gist (coordequ);
CREATE INDEX objects_simbad_name_idx ON objects (lower(simbad_name));
CREATE INDEX objects_vsx_name_idx ON objects (lower(vsx_name));

CREATE TABLE observations (
    id serial PRIMARY KEY,
    dateobs timestamptz,
    accumtime numeric(12, 4),
    telescope_id integer REFERENCES telescopes (id),
    instrument_id integer REFERENCES instruments (id),
    fov point,
    mode varchar(8),
    band varchar(8),
    coordequ spoint,
    coordequsrc varchar(16),
    type varchar(8),
    filename varchar(255),
    path_to_fits varchar(1024),
    mjd double precision,
    timesys varchar(8)
);
COMMENT ON COLUMN observations.dateobs IS 'start of exposure (DATE-OBS), as in the archive document';
COMMENT ON COLUMN observations.mjd IS 'MJD at mid-exposure in the UTC scale, computed with astropy';
COMMENT ON COLUMN observations.fov IS 'angular size (x, y) in radians';
CREATE INDEX observations_dateobs_idx ON observations (dateobs);
CREATE INDEX observations_mjd_idx ON observations (mjd);
CREATE INDEX observations_coordequ_idx ON observations USING gist (coordequ);
CREATE INDEX observations_filename_idx ON observations (filename);

CREATE TABLE metadata_obs_json (
    id serial PRIMARY KEY,
    observation_id integer NOT NULL REFERENCES observations (id) ON DELETE CASCADE,
    data jsonb NOT NULL
);
CREATE INDEX metadata_obs_json_observation_idx ON metadata_obs_json (observation_id);
CREATE INDEX metadata_obs_json_data_idx ON metadata_obs_json USING gin (data jsonb_path_ops);

CREATE TABLE lightcurves (
    id serial PRIMARY KEY,
    object_id integer NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    dateobs timestamptz NOT NULL,
    magnitude numeric(12, 4),
    mag_err numeric(12, 4),
    datasource_id integer REFERENCES datasources (id) ON DELETE CASCADE,
    photosys_id integer REFERENCES photosys (id),
    mag_diff numeric(12, 4),
    mag_diff_err numeric(12, 4),
    id_arch integer,
    observation_id integer REFERENCES observations (id) ON DELETE CASCADE,
    quality integer,
    mjd double precision
);
COMMENT ON COLUMN lightcurves.mjd IS 'MJD (UTC) of the point, computed with astropy from the uploaded time';
CREATE INDEX lightcurves_object_idx ON lightcurves (object_id, dateobs);
CREATE INDEX lightcurves_observation_idx ON lightcurves (observation_id);
CREATE INDEX lightcurves_datasource_idx ON lightcurves (datasource_id);

CREATE TABLE metadata_lc_json (
    id bigserial PRIMARY KEY,
    lightcurve_id bigint NOT NULL REFERENCES lightcurves (id) ON DELETE CASCADE,
    data jsonb NOT NULL
);
CREATE INDEX metadata_lc_json_lightcurve_idx ON metadata_lc_json (lightcurve_id);
CREATE INDEX metadata_lc_json_comp_stars_idx ON metadata_lc_json USING gin ((data -> 'comp_stars'));

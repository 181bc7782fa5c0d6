-- Redshift's types, functions and catalog views, where the connector depends on them, stood up
-- on PostgreSQL for the tests. Installed once in a template database; every test database is
-- created from it. The session side (server_version, protocol rules, SQL rules, identifier
-- folding) is the proxy's (redshift/mod.rs).

-- Everything lives in catalog_history, one of Redshift's system schemas, which the connector
-- never lists; test databases have it on their search_path before pg_catalog.
CREATE SCHEMA catalog_history;
GRANT USAGE ON SCHEMA catalog_history TO PUBLIC;
SET search_path = catalog_history;

-- Types of Redshift's own, each a type of its own (an OID Redshift's binary rules do not
-- trust), with the I/O of the PostgreSQL type whose text form matches Redshift's:
-- VARBYTE as BYTEA (hex; PostgreSQL prefixes \x), SUPER as JSONB (its JSON text), GEOMETRY and
-- GEOGRAPHY as TEXT holding hex EWKB, which is what Redshift prints for a shape.
CREATE TYPE varbyte;
CREATE FUNCTION varbyte_in(cstring) RETURNS varbyte LANGUAGE internal IMMUTABLE STRICT AS 'byteain';
CREATE FUNCTION varbyte_out(varbyte) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'byteaout';
CREATE FUNCTION varbyte_recv(internal) RETURNS varbyte LANGUAGE internal IMMUTABLE STRICT AS 'bytearecv';
CREATE FUNCTION varbyte_send(varbyte) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'byteasend';
CREATE TYPE varbyte (INPUT = varbyte_in, OUTPUT = varbyte_out, RECEIVE = varbyte_recv,
                     SEND = varbyte_send, LIKE = bytea);
CREATE CAST (varbyte AS bytea) WITHOUT FUNCTION AS IMPLICIT;
CREATE CAST (bytea AS varbyte) WITHOUT FUNCTION AS IMPLICIT;

CREATE TYPE super;
CREATE FUNCTION super_in(cstring) RETURNS super LANGUAGE internal IMMUTABLE STRICT AS 'jsonb_in';
CREATE FUNCTION super_out(super) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'jsonb_out';
CREATE FUNCTION super_recv(internal) RETURNS super LANGUAGE internal IMMUTABLE STRICT AS 'jsonb_recv';
CREATE FUNCTION super_send(super) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'jsonb_send';
CREATE TYPE super (INPUT = super_in, OUTPUT = super_out, RECEIVE = super_recv,
                   SEND = super_send, LIKE = jsonb);
CREATE CAST (super AS jsonb) WITHOUT FUNCTION AS IMPLICIT;
CREATE CAST (jsonb AS super) WITHOUT FUNCTION AS IMPLICIT;

CREATE TYPE geometry;
CREATE FUNCTION geometry_in(cstring) RETURNS geometry LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION geometry_out(geometry) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE FUNCTION geometry_recv(internal) RETURNS geometry LANGUAGE internal IMMUTABLE STRICT AS 'textrecv';
CREATE FUNCTION geometry_send(geometry) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'textsend';
CREATE TYPE geometry (INPUT = geometry_in, OUTPUT = geometry_out, RECEIVE = geometry_recv,
                      SEND = geometry_send, LIKE = text);
CREATE CAST (geometry AS text) WITHOUT FUNCTION AS IMPLICIT;
CREATE CAST (text AS geometry) WITHOUT FUNCTION AS ASSIGNMENT;

CREATE TYPE geography;
CREATE FUNCTION geography_in(cstring) RETURNS geography LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION geography_out(geography) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE FUNCTION geography_recv(internal) RETURNS geography LANGUAGE internal IMMUTABLE STRICT AS 'textrecv';
CREATE FUNCTION geography_send(geography) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT AS 'textsend';
CREATE TYPE geography (INPUT = geography_in, OUTPUT = geography_out, RECEIVE = geography_recv,
                       SEND = geography_send, LIKE = text);
CREATE CAST (geography AS text) WITHOUT FUNCTION AS IMPLICIT;
CREATE CAST (text AS geography) WITHOUT FUNCTION AS ASSIGNMENT;

-- The functions the connector calls, with the limits that matter.

-- JSON_SERIALIZE: a SQL NULL becomes the JSON text `null`, and a value longer than a VARCHAR
-- (65,535 bytes) is an error, although a SUPER holds up to 16 MB.
CREATE FUNCTION json_serialize(value super) RETURNS varchar LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE serialized text := COALESCE(value::jsonb::text, 'null');
BEGIN
    IF octet_length(serialized) > 65535 THEN
        RAISE EXCEPTION 'The JSON_SERIALIZE result exceeds the maximum VARCHAR size of 65535'
            USING ERRCODE = 'XX000';
    END IF;
    RETURN serialized;
END $$;

-- JSON_SERIALIZE_TO_VARBYTE: the same text, as bytes, up to VARBYTE's 16 MB; NULL as `null`.
CREATE FUNCTION json_serialize_to_varbyte(value super) RETURNS varbyte LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(COALESCE(value::jsonb::text, 'null'), 'UTF8')::varbyte
$$;

-- TO_HEX of a VARBYTE returns a VARCHAR: over 32,767 input bytes it cannot.
CREATE FUNCTION to_hex(value varbyte) RETURNS varchar LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF octet_length(value::bytea) > 32767 THEN
        RAISE EXCEPTION 'Value too long for character type' USING ERRCODE = '22001';
    END IF;
    RETURN encode(value::bytea, 'hex');
END $$;

-- ST_AsEWKT: text limited to 64 KB, and coordinates rounded (here: not a faithful WKT at all,
-- which is enough to tell it from the shape's exact EWKB).
CREATE FUNCTION st_asewkt(shape geometry) RETURNS varchar LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF octet_length(shape::text) / 2 > 65535 THEN
        RAISE EXCEPTION 'ST_AsEWKT: the result is larger than 64 KB' USING ERRCODE = 'XX000';
    END IF;
    RETURN 'SRID=0;GEOMETRY(' || left(shape::text, 30) || ')';
END $$;
CREATE FUNCTION st_asewkt(shape geography) RETURNS varchar LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT st_asewkt(shape::text::geometry)
$$;

-- GETDATE(): the statement's start, in the session's time zone, to the second; a database may
-- set redshift.clock_offset (an interval) to stand for a cluster whose clock is not this
-- machine's.
CREATE FUNCTION getdate() RETURNS timestamp LANGUAGE sql STABLE AS $$
    SELECT date_trunc('second', statement_timestamp() AT TIME ZONE current_setting('TimeZone'))
           + COALESCE(NULLIF(current_setting('redshift.clock_offset', true), ''), '0')::interval
$$;

-- Redshift parses a table name given as text itself, folding quoted names to lower case
-- unless enable_case_sensitive_identifier is on: a mixed-case table then does not exist.
-- (Found before pg_catalog's own: test databases search catalog_history first.)
CREATE FUNCTION has_table_privilege(relation text, privilege text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF current_setting('redshift.enable_case_sensitive_identifier', true) IS DISTINCT FROM 'true' THEN
        relation := lower(relation);
    END IF;
    RETURN pg_catalog.has_table_privilege(relation, privilege);
END $$;

-- A case-insensitive collation that also ignores blanks: Redshift's CASE_INSENSITIVE columns,
-- and its VARCHAR comparisons that ignore trailing blanks.
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2-ka-shifted',
                                   deterministic = false);

-- Spectrum: external tables, stood up as foreign tables over files.
CREATE EXTENSION file_fdw;
CREATE SERVER spectrum FOREIGN DATA WRAPPER file_fdw;

-- The catalog views. Like Redshift's, svv_columns lists the columns of every local table and
-- view whatever the user may read, and of the external tables the user was granted; unlike
-- information_schema it lists external tables at all.
CREATE VIEW svv_tables AS
SELECT current_database()::text AS table_catalog,
       n.nspname::text AS table_schema,
       c.relname::text AS table_name,
       CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'EXTERNAL TABLE' ELSE 'BASE TABLE' END
           AS table_type,
       NULL::text AS remarks
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND (c.relkind <> 'f' OR pg_catalog.has_table_privilege(c.oid, 'SELECT'));

CREATE VIEW svv_columns AS
SELECT current_database()::text AS table_catalog,
       n.nspname::text AS table_schema,
       c.relname::text AS table_name,
       a.attname::text AS column_name,
       a.attnum::int AS ordinal_position,
       NULL::text AS column_default,
       CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
       CASE WHEN t.typname IN ('super', 'varbyte', 'geometry', 'geography') THEN t.typname::text
            ELSE pg_catalog.format_type(a.atttypid, NULL) END AS data_type,
       information_schema._pg_char_max_length(a.atttypid, a.atttypmod) AS character_maximum_length,
       information_schema._pg_numeric_precision(a.atttypid, a.atttypmod) AS numeric_precision,
       information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) AS numeric_scale,
       NULL::text AS remarks
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND (c.relkind <> 'f' OR pg_catalog.has_table_privilege(c.oid, 'SELECT'));

GRANT SELECT ON svv_tables, svv_columns TO PUBLIC;

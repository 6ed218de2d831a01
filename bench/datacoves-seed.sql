-- The Datacoves side of the benchmarks: account 1 `bench`, project 1 `benchproj`, and a
-- user whose token (psql variable `token`) may write to the whole project and run its jobs. The scripts add
-- the environments. Run on a database holding tests/fixtures/sql/datacoves-schema.sql.
INSERT INTO users_account (id, name, slug, created_at, updated_at) VALUES (1, 'Bench', 'bench', now(), now());
INSERT INTO projects_project (id, account_id, name, slug, created_at, updated_at) VALUES (1, 1, 'Bench', 'benchproj', now(), now());
INSERT INTO users_user (id, email, name) VALUES (1, 'bench@example.com', 'Bench');
-- The token as django-rest-knox 5 stores it: its SHA-512 and first 15 characters (a project token).
INSERT INTO iam_datacovestoken (digest, token_key, created, type, project_id, user_id)
  VALUES (encode(sha512(convert_to(:'token', 'UTF8')), 'hex'), left(:'token', 15), now(), 1, 1, 1);
INSERT INTO auth_group (id, name) VALUES (1, 'bench');
INSERT INTO users_extendedgroup (id, name, group_id, account_id) VALUES (1, 'bench', 1, 1);
INSERT INTO users_user_groups (user_id, group_id) VALUES (1, 1);
INSERT INTO auth_permission (id, name, codename) VALUES (1, 'bench:benchproj|dbt-api:manifest|write', 'w'),
                                                        (2, 'bench:benchproj|workbench:airflow|read', 'r'),
                                                        (3, 'bench:benchproj|workbench:airflow|write', 'x');
INSERT INTO auth_group_permissions (group_id, permission_id) VALUES (1, 1), (1, 2), (1, 3);

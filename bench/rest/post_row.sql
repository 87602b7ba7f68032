\set c random(0, 99)
BEGIN;
SELECT set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true), set_config('request.method', 'POST', true), set_config('request.path', '/items', true), set_config('request.headers', '{}', true);
INSERT INTO public.items(category, name, price) VALUES (:c, 'bench', 1.5);
COMMIT;

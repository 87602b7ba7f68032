\set c random(0, 99)
BEGIN;
SELECT set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true), set_config('request.method', 'GET', true), set_config('request.path', '/items', true), set_config('request.headers', '{}', true);
SELECT coalesce(json_agg(t), '[]')::text FROM (SELECT id, category, name, price, created_at FROM public.items WHERE category = :c ORDER BY price DESC LIMIT 50) t;
COMMIT;

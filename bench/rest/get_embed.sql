\set id random(1, 10000)
BEGIN;
SELECT set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role":"anon"}', true), set_config('request.method', 'GET', true), set_config('request.path', '/items', true), set_config('request.headers', '{}', true);
SELECT coalesce(json_agg(t), '[]')::text FROM (SELECT i.id, i.name, (SELECT coalesce(json_agg(r), '[]') FROM (SELECT stars, body FROM public.reviews WHERE item_id = i.id) r) AS reviews FROM public.items i WHERE i.id = :id) t;
COMMIT;

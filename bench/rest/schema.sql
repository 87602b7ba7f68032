-- Bench schema: 10,000 items with 5 reviews each, readable and insertable by anon.
create table items(id serial primary key, category int not null, name text not null, price numeric(10,2) not null, created_at timestamptz not null default now());
create table reviews(id serial primary key, item_id int not null references items(id), stars int not null, body text not null);
create index on items(category, price);
create index on reviews(item_id);
insert into items(category, name, price) select g % 100, 'item ' || g, (g % 997) / 10.0 from generate_series(1, 10000) g;
insert into reviews(item_id, stars, body) select 1 + (g % 10000), 1 + g % 5, 'review ' || g from generate_series(1, 50000) g;
analyze;
grant usage on schema public to anon;
grant select, insert on items, reviews to anon;
grant usage on all sequences in schema public to anon;

//! REST reads against a real PostgreSQL: select, filters, order, paging, counts, embeds, media
//! types — as table-driven scenarios, with a bad-input table beside them.

mod common;
mod rest_fixture;

use rest_fixture::{Expect::*, Rest, case, run};
use serde_json::json;

#[tokio::test]
async fn select_and_filters() {
    let r = Rest::new().await;
    let cases = vec![
        case(
            "columns",
            "GET",
            "/directors?select=id,name&order=id",
            200,
            Json(
                json!([{"id":1,"name":"Kubrick"},{"id":2,"name":"Kurosawa"},{"id":3,"name":"Nobody"}]),
            ),
        ),
        case(
            "star",
            "GET",
            "/technical_specs?order=film_id",
            200,
            Json(json!([{"film_id":1,"runtime":149},{"film_id":3,"runtime":162}])),
        ),
        case(
            "alias and cast",
            "GET",
            "/films?select=name:title,y:year::text&id=eq.1",
            200,
            Json(json!([{"name":"2001","y":"1968"}])),
        ),
        case(
            "json paths",
            "GET",
            "/films?select=id,lang:meta->>lang,meta->awards->oscars&id=eq.1",
            200,
            Json(json!([{"id":1,"lang":"en","oscars":1}])),
        ),
        case(
            "json path filter",
            "GET",
            "/films?select=id&meta->>lang=eq.ja",
            200,
            Json(json!([{"id":3}])),
        ),
        case(
            "eq",
            "GET",
            "/films?select=id&year=eq.1980",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "neq",
            "GET",
            "/films?select=id&year=neq.1968&order=id",
            200,
            Json(json!([{"id":2},{"id":3},{"id":4}])),
        ),
        case(
            "gt lt",
            "GET",
            "/films?select=id&year=gt.1960&year=lt.1985&order=id",
            200,
            Json(json!([{"id":1},{"id":2}])),
        ),
        case(
            "gte lte",
            "GET",
            "/films?select=id&year=gte.1980&year=lte.1985&order=id",
            200,
            Json(json!([{"id":2},{"id":3}])),
        ),
        case(
            "like star",
            "GET",
            "/films?select=id&title=like.*Shin*",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "ilike",
            "GET",
            "/films?select=id&title=ilike.*shin*",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "match",
            "GET",
            "/films?select=id&title=match.^R",
            200,
            Json(json!([{"id":3}])),
        ),
        case(
            "imatch",
            "GET",
            "/films?select=id&title=imatch.^r",
            200,
            Json(json!([{"id":3}])),
        ),
        case(
            "in",
            "GET",
            "/films?select=id&id=in.(1,3,9)&order=id",
            200,
            Json(json!([{"id":1},{"id":3}])),
        ),
        case(
            "in quoted",
            "GET",
            "/films?select=id&title=in.(\"The Shining\",Ran)&order=id",
            200,
            Json(json!([{"id":2},{"id":3}])),
        ),
        case(
            "in empty",
            "GET",
            "/films?select=id&id=in.()",
            200,
            Json(json!([])),
        ),
        case(
            "not in",
            "GET",
            "/films?select=id&id=not.in.(1,2,3)&order=id",
            200,
            Json(json!([{"id":4},{"id":5}])),
        ),
        case(
            "is null",
            "GET",
            "/films?select=id&year=is.null",
            200,
            Json(json!([{"id":5}])),
        ),
        case(
            "is not_null",
            "GET",
            "/films?select=id&director_id=is.not_null&year=lt.1960",
            200,
            Json(json!([{"id":4}])),
        ),
        case(
            "not is null",
            "GET",
            "/films?select=id&rating=not.is.null&order=id.desc&limit=1",
            200,
            Json(json!([{"id":4}])),
        ),
        case(
            "isdistinct",
            "GET",
            "/films?select=id&director_id=isdistinct.1&order=id",
            200,
            Json(json!([{"id":3},{"id":4},{"id":5}])),
        ),
        case(
            "cs",
            "GET",
            "/films?select=id&tags=cs.{classic}&order=id",
            200,
            Json(json!([{"id":1},{"id":3}])),
        ),
        case(
            "cd",
            "GET",
            "/films?select=id&tags=cd.{horror,war}&order=id",
            200,
            Json(json!([{"id":2},{"id":4},{"id":5}])),
        ),
        case(
            "ov",
            "GET",
            "/films?select=id&tags=ov.{space,war}&order=id",
            200,
            Json(json!([{"id":1},{"id":3}])),
        ),
        case(
            "jsonb cs",
            "GET",
            "/films?select=id&meta=cs.{\"lang\":\"ja\"}",
            200,
            Json(json!([{"id":3}])),
        ),
        case(
            "eq any",
            "GET",
            "/films?select=id&year=eq(any).{1968,1985}&order=id",
            200,
            Json(json!([{"id":1},{"id":3}])),
        ),
        case(
            "like all",
            "GET",
            "/films?select=id&title=like(all).{*h*,*e*}",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "ilike any",
            "GET",
            "/films?select=id&title=ilike(any).{ran,ikiru}&order=id",
            200,
            Json(json!([{"id":3},{"id":4}])),
        ),
        case(
            "fts on text",
            "GET",
            "/films?select=id&title=fts.shining",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "plfts with config",
            "GET",
            "/films?select=id&title=plfts(english).the%20shining",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "phfts",
            "GET",
            "/films?select=id&title=phfts(english).the%20shining",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "wfts",
            "GET",
            "/films?select=id&title=wfts(simple).ran%20or%20ikiru&order=id",
            200,
            Json(json!([{"id":3},{"id":4}])),
        ),
        case(
            "or",
            "GET",
            "/films?select=id&or=(year.eq.1968,title.eq.Ran)&order=id",
            200,
            Json(json!([{"id":1},{"id":3}])),
        ),
        case(
            "or nested and",
            "GET",
            "/films?select=id&or=(id.eq.5,and(year.gt.1970,year.lt.1981))&order=id",
            200,
            Json(json!([{"id":2},{"id":5}])),
        ),
        case(
            "not.or",
            "GET",
            "/films?select=id&not.or=(id.lt.3,year.is.null)&order=id",
            200,
            Json(json!([{"id":3},{"id":4}])),
        ),
        case(
            "and with not",
            "GET",
            "/films?select=id&and=(year.gte.1950,title.not.like.*n*)&order=id",
            200,
            Json(json!([{"id":1},{"id":4}])),
        ),
        case(
            "or quoted value",
            "GET",
            "/films?select=id&or=(title.eq.\"The Shining\",title.eq.\"a,b\")",
            200,
            Json(json!([{"id":2}])),
        ),
        case(
            "view",
            "GET",
            "/film_titles?select=title&year=eq.1985",
            200,
            Json(json!([{"title":"Ran"}])),
        ),
        case(
            "filter and order by computed field",
            "GET",
            "/films?select=id&full_title=like.*(19*&order=full_title.desc",
            200,
            Json(json!([{"id":2},{"id":3},{"id":4},{"id":1}])),
        ),
        case(
            "computed field",
            "GET",
            "/films?select=id,full_title&id=in.(1,5)&order=id",
            200,
            Json(json!([{"id":1,"full_title":"2001 (1968)"},{"id":5,"full_title":"Untitled (?)"}])),
        ),
        case(
            "empty select",
            "GET",
            "/directors?select=&id=eq.1",
            200,
            Json(json!([{}])),
        ),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn order_paging_counts() {
    let r = Rest::new().await;
    let cases = vec![
        case(
            "order desc nullslast",
            "GET",
            "/films?select=id&order=year.desc.nullslast",
            200,
            Json(json!([{"id":3},{"id":2},{"id":1},{"id":4},{"id":5}])),
        ),
        case(
            "order asc nullsfirst",
            "GET",
            "/films?select=id&order=year.asc.nullsfirst",
            200,
            Json(json!([{"id":5},{"id":4},{"id":1},{"id":2},{"id":3}])),
        ),
        case(
            "order two keys",
            "GET",
            "/films?select=id&order=director_id.desc.nullsfirst,id.desc",
            200,
            Json(json!([{"id":5},{"id":4},{"id":3},{"id":2},{"id":1}])),
        ),
        case(
            "order by to-one relation",
            "GET",
            "/films?select=id,directors(name)&director_id=not.is.null&order=directors(name).desc,id",
            200,
            Json(
                json!([{"id":3,"directors":{"name":"Kurosawa"}},{"id":4,"directors":{"name":"Kurosawa"}},{"id":1,"directors":{"name":"Kubrick"}},{"id":2,"directors":{"name":"Kubrick"}}]),
            ),
        ),
        case(
            "limit offset",
            "GET",
            "/films?select=id&order=id&limit=2&offset=1",
            200,
            Json(json!([{"id":2},{"id":3}])),
        )
        .want("content-range", "1-2/*"),
        case(
            "count exact partial",
            "GET",
            "/films?select=id&order=id&limit=2",
            206,
            Json(json!([{"id":1},{"id":2}])),
        )
        .h("prefer", "count=exact")
        .want("content-range", "0-1/5"),
        case("count exact all", "GET", "/directors?select=id", 200, Any)
            .h("prefer", "count=exact")
            .want("content-range", "0-2/3"),
        case(
            "count zero rows",
            "GET",
            "/films?select=id&id=eq.99",
            200,
            Json(json!([])),
        )
        .h("prefer", "count=exact")
        .want("content-range", "*/0"),
        case(
            "range header",
            "GET",
            "/films?select=id&order=id",
            206,
            Json(json!([{"id":3},{"id":4}])),
        )
        .h("range", "2-3")
        .h("prefer", "count=exact")
        .want("content-range", "2-3/5"),
        case(
            "range past the end",
            "GET",
            "/films?select=id&order=id&offset=9",
            416,
            Code("PGRST103"),
        )
        .h("prefer", "count=exact"),
        case("head", "HEAD", "/films?select=id", 200, Empty)
            .h("prefer", "count=exact")
            .want("content-range", "0-4/5"),
    ];
    run(&r, cases).await;
    // A planned count is the planner's estimate: a number, whatever its value.
    r.db.admin().batch_execute("analyze films").await.unwrap();
    let res = r
        .send(
            "GET",
            "/films?select=id&limit=1&order=id",
            &[("prefer", "count=planned")],
            "",
        )
        .await;
    assert_eq!(res.json(), json!([{"id":1}]));
    let range = res.header("content-range").unwrap_or_default().to_string();
    let total: i64 = range
        .strip_prefix("0-0/")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("content-range {range}"));
    assert_eq!(total, 5, "after ANALYZE the estimate of a 5-row table is 5");
    let res = r
        .send(
            "GET",
            "/films?select=id&limit=1",
            &[("prefer", "count=estimated")],
            "",
        )
        .await;
    assert_eq!(
        res.header("content-range"),
        Some("0-0/5"),
        "estimated without max-rows is exact"
    );
}

#[tokio::test]
async fn embeds() {
    let r = Rest::new().await;
    let cases = vec![
        case(
            "many-to-one",
            "GET",
            "/films?select=title,directors(name)&id=eq.1",
            200,
            Json(json!([{"title":"2001","directors":{"name":"Kubrick"}}])),
        ),
        case(
            "many-to-one null",
            "GET",
            "/films?select=title,directors(name)&id=eq.5",
            200,
            Json(json!([{"title":"Untitled","directors":null}])),
        ),
        case(
            "many-to-one by column with alias",
            "GET",
            "/films?select=title,director:director_id(name)&id=eq.3",
            200,
            Json(json!([{"title":"Ran","director":{"name":"Kurosawa"}}])),
        ),
        case(
            "one-to-many",
            "GET",
            "/directors?select=name,films(title)&id=eq.2&films.order=year",
            200,
            Json(json!([{"name":"Kurosawa","films":[{"title":"Ikiru"},{"title":"Ran"}]}])),
        ),
        case(
            "one-to-many empty",
            "GET",
            "/directors?select=name,films(title)&id=eq.3",
            200,
            Json(json!([{"name":"Nobody","films":[]}])),
        ),
        case(
            "one-to-one",
            "GET",
            "/films?select=title,technical_specs(runtime)&id=in.(1,2)&order=id",
            200,
            Json(
                json!([{"title":"2001","technical_specs":{"runtime":149}},{"title":"The Shining","technical_specs":null}]),
            ),
        ),
        case(
            "many-to-many",
            "GET",
            "/films?select=title,actors(name)&id=eq.2&actors.order=name",
            200,
            Json(
                json!([{"title":"The Shining","actors":[{"name":"Jack Nicholson"},{"name":"Shelley Duvall"}]}]),
            ),
        ),
        case(
            "many-to-many reverse",
            "GET",
            "/actors?select=name,films(title)&id=eq.1",
            200,
            Json(json!([{"name":"Keir Dullea","films":[{"title":"2001"}]}])),
        ),
        case(
            "junction embeds both",
            "GET",
            "/roles?select=character,films(title),actors(name)&film_id=eq.1",
            200,
            Json(
                json!([{"character":"Dave","films":{"title":"2001"},"actors":{"name":"Keir Dullea"}}]),
            ),
        ),
        case(
            "nested",
            "GET",
            "/directors?select=name,films(title,actors(name))&id=eq.1&films.order=id",
            200,
            Json(
                json!([{"name":"Kubrick","films":[{"title":"2001","actors":[{"name":"Keir Dullea"}]},{"title":"The Shining","actors":[{"name":"Jack Nicholson"},{"name":"Shelley Duvall"}]}]}]),
            ),
        ),
        case(
            "self many-to-one by column",
            "GET",
            "/employees?select=name,supervisor:supervisor_id(name)&id=eq.3",
            200,
            Json(json!([{"name":"Low","supervisor":{"name":"Mid"}}])),
        ),
        case(
            "self one-to-many",
            "GET",
            "/employees?select=name,reports:employees(name)&id=eq.1&reports.order=id",
            200,
            Json(json!([{"name":"Boss","reports":[{"name":"Mid"},{"name":"Other"}]}])),
        ),
        case(
            "ambiguous",
            "GET",
            "/actors?select=name,messages(body)",
            300,
            Code("PGRST201"),
        ),
        case(
            "hint disambiguates",
            "GET",
            "/actors?select=name,sent:messages!messages_sender_id_fkey(body)&id=eq.1",
            200,
            Json(json!([{"name":"Keir Dullea","sent":[{"body":"hi"}]}])),
        ),
        case(
            "hint by column",
            "GET",
            "/actors?select=name,received:messages!receiver_id(body)&id=eq.1",
            200,
            Json(json!([{"name":"Keir Dullea","received":[{"body":"hello"}]}])),
        ),
        case(
            "no relationship",
            "GET",
            "/directors?select=*,actors(*)",
            400,
            Code("PGRST200"),
        ),
        case(
            "embedded filter",
            "GET",
            "/directors?select=name,films(title)&id=eq.1&films.year=gt.1970",
            200,
            Json(json!([{"name":"Kubrick","films":[{"title":"The Shining"}]}])),
        ),
        case(
            "embedded limit and order",
            "GET",
            "/directors?select=name,films(title)&id=eq.2&films.order=year.desc&films.limit=1",
            200,
            Json(json!([{"name":"Kurosawa","films":[{"title":"Ran"}]}])),
        ),
        case(
            "embedded offset",
            "GET",
            "/directors?select=name,films(title)&id=eq.2&films.order=year&films.offset=1",
            200,
            Json(json!([{"name":"Kurosawa","films":[{"title":"Ran"}]}])),
        ),
        case(
            "embedded or",
            "GET",
            "/directors?select=id,films(id)&id=eq.1&films.or=(id.eq.1,id.eq.9)",
            200,
            Json(json!([{"id":1,"films":[{"id":1}]}])),
        ),
        case(
            "inner join filters parents",
            "GET",
            "/directors?select=name,films!inner(title)&films.year=eq.1985",
            200,
            Json(json!([{"name":"Kurosawa","films":[{"title":"Ran"}]}])),
        ),
        case(
            "left join keeps parents",
            "GET",
            "/directors?select=id,films!left(id)&films.id=eq.1&order=id",
            200,
            Json(json!([{"id":1,"films":[{"id":1}]},{"id":2,"films":[]},{"id":3,"films":[]}])),
        ),
        case(
            "anti join",
            "GET",
            "/directors?select=name,films()&films=is.null",
            200,
            Json(json!([{"name":"Nobody"}])),
        ),
        case(
            "semi join",
            "GET",
            "/directors?select=id,films()&films=not.is.null&order=id",
            200,
            Json(json!([{"id":1},{"id":2}])),
        ),
        case(
            "spread",
            "GET",
            "/films?select=title,...directors(director:name)&id=eq.1",
            200,
            Json(json!([{"title":"2001","director":"Kubrick"}])),
        ),
        case(
            "computed relationship to-many",
            "GET",
            "/films?select=title,cast_members(name)&id=eq.2&cast_members.order=name.desc",
            200,
            Json(
                json!([{"title":"The Shining","cast_members":[{"name":"Shelley Duvall"},{"name":"Jack Nicholson"}]}]),
            ),
        ),
        case(
            "computed relationship to-one",
            "GET",
            "/employees?select=name,boss(name)&id=eq.3",
            200,
            Json(json!([{"name":"Low","boss":{"name":"Mid"}}])),
        ),
        case(
            "view one-to-many",
            "GET",
            "/film_titles?select=title,roles(character)&id=eq.1",
            200,
            Json(json!([{"title":"2001","roles":[{"character":"Dave"}]}])),
        ),
        case(
            "many-to-one to a view",
            "GET",
            "/roles?select=character,film_titles(year)&film_id=eq.3",
            200,
            Json(json!([{"character":"Hidetora","film_titles":{"year":1985}}])),
        ),
        case(
            "view many-to-many",
            "GET",
            "/film_titles?select=id,actors(name)&id=eq.1",
            200,
            Json(json!([{"id":1,"actors":[{"name":"Keir Dullea"}]}])),
        ),
        case(
            "spread to-many",
            "GET",
            "/films?select=title,...actors(actor:name)&id=in.(2,4)&actors.order=name&order=id",
            200,
            Json(
                json!([{"title":"The Shining","actor":["Jack Nicholson","Shelley Duvall"]},{"title":"Ikiru","actor":[]}]),
            ),
        ),
        case(
            "embed through view target",
            "GET",
            "/films?select=id,directors(*)&id=eq.4",
            200,
            Json(json!([{"id":4,"directors":{"id":2,"name":"Kurosawa"}}])),
        ),
        case(
            "filter on unselected embed",
            "GET",
            "/directors?select=name&films.year=eq.1",
            400,
            Code("PGRST108"),
        ),
        case(
            "order by to-many relation",
            "GET",
            "/directors?select=id&order=films(year)",
            400,
            Code("PGRST118"),
        ),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn media_types_and_profiles() {
    let r = Rest::new().await;
    let cases = vec![
        case(
            "object",
            "GET",
            "/directors?select=name&id=eq.1",
            200,
            Json(json!({"name":"Kubrick"})),
        )
        .h("accept", "application/vnd.pgrst.object+json")
        .want(
            "content-type",
            "application/vnd.pgrst.object+json; charset=utf-8",
        ),
        case(
            "object with many rows",
            "GET",
            "/directors?select=name",
            406,
            Code("PGRST116"),
        )
        .h("accept", "application/vnd.pgrst.object+json"),
        case(
            "object with no rows",
            "GET",
            "/directors?select=name&id=eq.9",
            406,
            Code("PGRST116"),
        )
        .h("accept", "application/vnd.pgrst.object+json"),
        case(
            "csv",
            "GET",
            "/films?select=id,title,year&id=in.(1,5)&order=id",
            200,
            Text("id,title,year\n1,2001,1968\n5,Untitled,"),
        )
        .h("accept", "text/csv")
        .want("content-type", "text/csv; charset=utf-8"),
        case(
            "nulls stripped",
            "GET",
            "/films?select=id,year&id=eq.5",
            200,
            Json(json!([{"id":5}])),
        )
        .h("accept", "application/vnd.pgrst.array+json;nulls=stripped"),
        case(
            "object nulls stripped",
            "GET",
            "/films?select=id,year&id=eq.5",
            200,
            Json(json!({"id":5})),
        )
        .h("accept", "application/vnd.pgrst.object+json;nulls=stripped"),
        case(
            "timezone preference",
            "GET",
            "/films?select=at:created_at::text&id=eq.1",
            200,
            Any,
        )
        .h("prefer", "timezone=Asia/Tokyo")
        .want("preference-applied", "timezone=Asia/Tokyo"),
        case(
            "unknown timezone",
            "GET",
            "/films?select=id&id=eq.1",
            400,
            Code("22023"),
        )
        .h("prefer", "timezone=Mars/Olympus"),
        case(
            "plans are off by default",
            "GET",
            "/films",
            406,
            Code("PGRST107"),
        )
        .h("accept", "application/vnd.pgrst.plan+json"),
        case("unknown accept", "GET", "/films", 406, Code("PGRST107")).h("accept", "image/png"),
        case(
            "profile public",
            "GET",
            "/directors?select=id&id=eq.1",
            200,
            Json(json!([{"id":1}])),
        )
        .h("accept-profile", "public"),
        case(
            "profile not exposed",
            "GET",
            "/directors",
            406,
            Code("PGRST106"),
        )
        .h("accept-profile", "auth"),
        case("options", "OPTIONS", "/films", 200, Empty)
            .want("allow", "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"),
    ];
    run(&r, cases).await;
    r.db.admin()
        .batch_execute("update films set created_at = '2020-01-01 00:00:00+00' where id = 1")
        .await
        .unwrap();
    let res = r
        .send(
            "GET",
            "/films?select=created_at&id=eq.1",
            &[("prefer", "timezone=Asia/Tokyo")],
            "",
        )
        .await;
    assert_eq!(
        res.json(),
        json!([{"created_at": "2020-01-01T09:00:00+09:00"}])
    );
}

/// Malformed or impossible reads: a 4xx with PostgREST's code, never a 500.
#[tokio::test]
async fn bad_reads() {
    let r = Rest::new().await;
    let cases = vec![
        case("unknown table", "GET", "/flims", 404, Code("PGRST205")),
        case(
            "unknown column",
            "GET",
            "/films?select=nope",
            400,
            Code("42703"),
        ),
        case(
            "unknown filter column",
            "GET",
            "/films?nope=eq.1",
            400,
            Code("42703"),
        ),
        case(
            "unknown order column",
            "GET",
            "/films?order=nope",
            400,
            Code("42703"),
        ),
        case(
            "bad value type",
            "GET",
            "/films?id=eq.abc",
            400,
            Code("22P02"),
        ),
        case(
            "bad operator",
            "GET",
            "/films?id=xx.1",
            400,
            Code("PGRST100"),
        ),
        case(
            "bad select",
            "GET",
            "/films?select=id,(",
            400,
            Code("PGRST100"),
        ),
        case("bad limit", "GET", "/films?limit=x", 400, Code("PGRST100")),
        case(
            "bad cast",
            "GET",
            "/films?select=id::nosuchtype",
            400,
            Code("42704"),
        ),
        case(
            "aggregates disabled",
            "GET",
            "/films?select=year.sum()",
            400,
            Code("PGRST123"),
        ),
        case(
            "bad regex",
            "GET",
            "/films?title=match.(",
            400,
            Code("2201B"),
        ),
        case("bad jwt", "GET", "/films", 401, Code("PGRST301"))
            .h("authorization", "Bearer not.a.jwt"),
        case("no privilege anon", "GET", "/items", 401, Code("42501")),
        case("bad path", "GET", "/a/b/c", 404, Code("PGRST125")),
        case("bad method", "TRACE", "/films", 405, Code("PGRST117")),
        case(
            "bad range",
            "GET",
            "/films?fts=fts().x",
            400,
            Code("PGRST100"),
        ),
    ];
    run(&r, cases).await;
    let res = r.get("/flims").await;
    assert_eq!(
        res.json()["hint"],
        "Perhaps you meant the table 'public.films'"
    );
}

#[tokio::test]
async fn aggregates_when_enabled() {
    // Per database: roles are cluster-wide and other tests run beside this one.
    let enable = "do $$ begin execute format('alter role authenticator in database %I set pgrst.db_aggregates_enabled = true', current_database()); end $$;";
    let r = Rest::with(&format!("{}\n{enable}", rest_fixture::FIXTURE)).await;
    let token = r.token("service_role", None);
    let auth = format!("Bearer {token}");
    let auth: &'static str = Box::leak(auth.into_boxed_str());
    let cases = vec![
        case(
            "sum grouped",
            "GET",
            "/items?select=category,amount.sum()&order=category",
            200,
            Json(json!([{"category":"a","sum":15},{"category":"b","sum":7}])),
        )
        .h("authorization", auth),
        case(
            "count()",
            "GET",
            "/items?select=count()",
            200,
            Json(json!([{"count":3}])),
        )
        .h("authorization", auth),
        case(
            "avg alias cast",
            "GET",
            "/items?select=avg:amount.avg()::int",
            200,
            Json(json!([{"avg":7}])),
        )
        .h("authorization", auth),
        case(
            "min max",
            "GET",
            "/items?select=amount.min(),amount.max()",
            200,
            Json(json!([{"min":5,"max":10}])),
        )
        .h("authorization", auth),
        case(
            "aggregate grouped by a to-one embed",
            "GET",
            "/films?select=count(),year.max(),directors(name)&director_id=eq.2",
            200,
            Json(json!([{"count":2,"max":1985,"directors":{"name":"Kurosawa"}}])),
        ),
        case(
            "embedded count",
            "GET",
            "/directors?select=name,films(count)&id=eq.1",
            200,
            Json(json!([{"name":"Kubrick","films":[{"count":2}]}])),
        ),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn max_rows_timeouts_and_auth_headers() {
    let r = Rest::with_settings(doska::config::Settings {
        db_max_rows: Some(2),
        db_statement_timeout: Some(200),
        ..Default::default()
    })
    .await;
    r.db.admin().batch_execute("create function slow() returns int language sql as 'select pg_sleep(2)::text::int + 1'; grant execute on function slow() to anon;").await.unwrap();
    r.rest.reload(&r.db.state.admin).await.unwrap();
    let cases = vec![
        case(
            "max rows caps the response",
            "GET",
            "/films?select=id&order=id",
            206,
            Json(json!([{"id":1},{"id":2}])),
        )
        .h("prefer", "count=exact")
        .want("content-range", "0-1/5"),
        case(
            "max rows caps a larger limit",
            "GET",
            "/films?select=id&order=id&limit=4",
            200,
            Json(json!([{"id":1},{"id":2}])),
        ),
        case("statement timeout", "POST", "/rpc/slow", 504, Code("57014")),
    ];
    run(&r, cases).await;
    let res = r
        .send(
            "GET",
            "/films",
            &[("authorization", "Bearer not.a.jwt")],
            "",
        )
        .await;
    assert_eq!(res.status, 401);
    assert!(
        res.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer error=\"invalid_token\"")),
        "{:?}",
        res.headers
    );
    let big = "x".repeat((1 << 20) + 10);
    let res = r.send("POST", "/directors", &[], &big).await;
    assert_eq!(
        (res.status, res.json()["code"].clone()),
        (413, json!("PGRST413"))
    );
}

#[tokio::test]
async fn execution_plans_when_enabled() {
    let enable = "do $$ begin execute format('alter role authenticator in database %I set pgrst.db_plan_enabled = true', current_database());
        execute format('alter role authenticator in database %I set pgrst.db_max_rows = 3', current_database()); end $$;";
    let r = Rest::with(&format!("{}\n{enable}", rest_fixture::FIXTURE)).await;
    let res = r
        .send(
            "GET",
            "/films?select=id&id=eq.1",
            &[(
                "accept",
                "application/vnd.pgrst.plan+json; for=\"application/json\"; options=analyze;",
            )],
            "",
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("content-type"),
        Some("application/vnd.pgrst.plan+json; for=\"application/json\"; charset=utf-8")
    );
    let plan = res.json();
    assert!(plan[0]["Plan"].is_object(), "{plan}");
    assert!(plan[0]["Execution Time"].is_number(), "analyze ran: {plan}");
    let res = r
        .send(
            "GET",
            "/films?select=id",
            &[("accept", "application/vnd.pgrst.plan")],
            "",
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("Aggregate"), "{}", res.text());
    // pgrst.db_max_rows from the database caps reads like --db-max-rows.
    assert_eq!(
        r.get("/films?select=id&order=id").await.json(),
        json!([{"id":1},{"id":2},{"id":3}])
    );
    // ANALYZE of a write is rolled back.
    let res = r
        .send(
            "DELETE",
            "/messages",
            &[("accept", "application/vnd.pgrst.plan+text; options=analyze")],
            "",
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        r.get("/messages?select=id&order=id").await.json(),
        json!([{"id":1},{"id":2}])
    );
}

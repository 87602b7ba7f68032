//! Renders a [`Catalog`] as the TypeScript `supabase gen types typescript` prints (postgres-meta's
//! template, formatted as its prettier run leaves it): `Json`, `Database` with each exposed
//! schema's `Tables` (`Row`, `Insert`, `Update`, `Relationships`), `Views`, `Functions` (`Args`,
//! `Returns`), `Enums` and `CompositeTypes`, the `Tables<>`, `TablesInsert<>`, `TablesUpdate<>`,
//! `Enums<>`, `CompositeTypes<>` helpers and `Constants`.

use std::cmp::Ordering;
use std::fmt::Write;

use super::catalog::{Catalog, Column, Function, Relation};

/// Prettier's line width.
const WIDTH: usize = 80;
/// The schema the helper types default to, as supabase's generator has it.
const DEFAULT_SCHEMA: &str = "public";

const JSON_TYPE: &str = "export type Json =
  | string
  | number
  | boolean
  | null
  | { [key: string]: Json | undefined }
  | Json[]
";

/// The whole file for the exposed `schemas` (those that exist), sorted by name as supabase's are.
pub fn render(cat: &Catalog, schemas: &[String]) -> String {
    let mut schemas: Vec<&String> = schemas.iter().collect();
    schemas.sort_by(|a, b| locale_cmp(a, b));
    schemas.dedup();
    let g = Gen {
        cat,
        schemas: &schemas,
    };
    let mut out = String::new();
    out.push_str(JSON_TYPE);
    out.push_str("\nexport type Database = {\n");
    for s in &schemas {
        g.schema(&mut out, s);
    }
    out.push_str("}\n");
    out.push_str(&helpers());
    out.push_str("\nexport const Constants = {\n");
    for s in &schemas {
        let enums = g.enums(s);
        let _ = writeln!(out, "  {}: {{", key(s));
        if enums.is_empty() {
            out.push_str("    Enums: {},\n");
        } else {
            out.push_str("    Enums: {\n");
            for (name, labels) in enums {
                let items: Vec<String> = labels.iter().map(|l| quote(l)).collect();
                let one = format!("      {}: [{}],", key(name), items.join(", "));
                if one.len() <= WIDTH {
                    let _ = writeln!(out, "{one}");
                } else {
                    let _ = writeln!(out, "      {}: [", key(name));
                    for i in items {
                        let _ = writeln!(out, "        {i},");
                    }
                    out.push_str("      ],\n");
                }
            }
            out.push_str("    },\n");
        }
        out.push_str("  },\n");
    }
    out.push_str("} as const\n");
    out
}

struct Gen<'a> {
    cat: &'a Catalog,
    schemas: &'a [&'a String],
}

impl Gen<'_> {
    fn exposed(&self, schema: &str) -> bool {
        self.schemas.iter().any(|s| s.as_str() == schema)
    }

    fn relations(&self, schema: &str, kinds: &[char]) -> Vec<&Relation> {
        let mut rs: Vec<&Relation> = self
            .cat
            .relations
            .iter()
            .filter(|r| r.schema == schema && kinds.contains(&r.kind))
            .collect();
        rs.sort_by(|a, b| locale_cmp(&a.name, &b.name));
        rs
    }

    fn enums(&self, schema: &str) -> Vec<(&String, &Vec<String>)> {
        let mut es: Vec<(&String, &Vec<String>)> = self
            .cat
            .types
            .values()
            .filter(|t| t.schema == schema && t.kind == 'e')
            .map(|t| (&t.name, &t.labels))
            .collect();
        es.sort_by(|a, b| locale_cmp(a.0, b.0));
        es
    }

    /// Functions supabase's generator keeps: every input argument named, or a single one.
    fn functions(&self, schema: &str) -> Vec<&Function> {
        let mut fs: Vec<&Function> = self
            .cat
            .functions
            .iter()
            .filter(|f| f.schema == schema)
            .filter(|f| {
                let inputs: Vec<_> = f.args.iter().filter(|a| is_input(a.mode)).collect();
                inputs.iter().all(|a| !a.name.is_empty()) || inputs.len() == 1
            })
            .collect();
        fs.sort_by(|a, b| locale_cmp(&a.name, &b.name));
        fs
    }

    fn schema(&self, out: &mut String, schema: &str) {
        let _ = writeln!(out, "  {}: {{", key(schema));
        // Tables.
        out.push_str("    Tables: {\n");
        let tables = self.relations(schema, &['r', 'p', 'f']);
        if tables.is_empty() {
            out.push_str("      [_ in never]: never\n");
        }
        let functions = self.functions(schema);
        for t in &tables {
            let cols = sorted(&t.columns);
            let _ = writeln!(out, "      {}: {{", key(&t.name));
            let mut row: Vec<String> = cols.iter().map(|c| self.row_member(c)).collect();
            // Computed fields: a function of the table's row.
            for f in &functions {
                let inputs: Vec<_> = f.args.iter().filter(|a| is_input(a.mode)).collect();
                if inputs.len() == 1
                    && self.cat.types.get(&inputs[0].type_oid).map(|t| t.relid) == Some(t.oid)
                {
                    row.push(format!("{}: {} | null", key(&f.name), self.ts(f.returns)));
                }
            }
            block(out, 8, "Row", &row);
            let insert: Vec<String> = cols
                .iter()
                .map(|c| {
                    if c.always {
                        return format!("{}?: never", key(&c.name));
                    }
                    let opt = if c.nullable || c.has_default { "?" } else { "" };
                    format!(
                        "{}{opt}: {}{}",
                        key(&c.name),
                        self.ts(c.type_oid),
                        null(c.nullable)
                    )
                })
                .collect();
            block(out, 8, "Insert", &insert);
            let update: Vec<String> = cols
                .iter()
                .map(|c| {
                    if c.always {
                        return format!("{}?: never", key(&c.name));
                    }
                    format!(
                        "{}?: {}{}",
                        key(&c.name),
                        self.ts(c.type_oid),
                        null(c.nullable)
                    )
                })
                .collect();
            block(out, 8, "Update", &update);
            self.relationships(out, t);
            out.push_str("      }\n");
        }
        out.push_str("    }\n");
        // Views.
        out.push_str("    Views: {\n");
        let views = self.relations(schema, &['v', 'm']);
        if views.is_empty() {
            out.push_str("      [_ in never]: never\n");
        }
        for v in &views {
            let cols = sorted(&v.columns);
            let _ = writeln!(out, "      {}: {{", key(&v.name));
            let row: Vec<String> = cols.iter().map(|c| self.row_member(c)).collect();
            block(out, 8, "Row", &row);
            if v.updatable {
                let write: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        if c.updatable {
                            format!("{}?: {} | null", key(&c.name), self.ts(c.type_oid))
                        } else {
                            format!("{}?: never", key(&c.name))
                        }
                    })
                    .collect();
                block(out, 8, "Insert", &write);
                block(out, 8, "Update", &write);
            }
            self.relationships(out, v);
            out.push_str("      }\n");
        }
        out.push_str("    }\n");
        // Functions, grouped by name: one Args per overload, the first one's Returns.
        out.push_str("    Functions: {\n");
        if functions.is_empty() {
            out.push_str("      [_ in never]: never\n");
        }
        let mut i = 0;
        while i < functions.len() {
            let name = &functions[i].name;
            let group: Vec<&Function> = functions[i..]
                .iter()
                .take_while(|f| &f.name == name)
                .copied()
                .collect();
            i += group.len();
            let _ = writeln!(out, "      {}: {{", key(name));
            let args: Vec<String> = group.iter().map(|f| self.args(f)).collect();
            let args = args.join(" | ");
            let line = format!("        Args: {args}");
            if line.len() <= WIDTH || !args.starts_with("{ ") || group.len() > 1 {
                let _ = writeln!(out, "{line}");
            } else {
                let inner = args.trim_start_matches("{ ").trim_end_matches(" }");
                let members: Vec<String> = inner.split("; ").map(String::from).collect();
                block(out, 8, "Args", &members);
            }
            self.returns(out, group[0]);
            out.push_str("      }\n");
        }
        out.push_str("    }\n");
        // Enums.
        out.push_str("    Enums: {\n");
        let enums = self.enums(schema);
        if enums.is_empty() {
            out.push_str("      [_ in never]: never\n");
        }
        for (name, labels) in enums {
            let union: Vec<String> = labels.iter().map(|l| quote(l)).collect();
            let one = format!("      {}: {}", key(name), union.join(" | "));
            if one.len() <= WIDTH || union.len() < 2 {
                let _ = writeln!(out, "{one}");
            } else {
                let _ = writeln!(out, "      {}:", key(name));
                for u in union {
                    let _ = writeln!(out, "        | {u}");
                }
            }
        }
        out.push_str("    }\n");
        // Composite types.
        out.push_str("    CompositeTypes: {\n");
        let composites = self.relations(schema, &['c']);
        if composites.is_empty() {
            out.push_str("      [_ in never]: never\n");
        }
        for c in composites {
            let members: Vec<String> = c
                .columns
                .iter()
                .map(|a| format!("{}: {} | null", key(&a.name), self.ts(a.type_oid)))
                .collect();
            block(out, 6, &c.name, &members);
        }
        out.push_str("    }\n");
        out.push_str("  }\n");
    }

    fn row_member(&self, c: &Column) -> String {
        format!(
            "{}: {}{}",
            key(&c.name),
            self.ts(c.type_oid),
            null(c.nullable)
        )
    }

    fn relationships(&self, out: &mut String, rel: &Relation) {
        let mut fks: Vec<_> = self
            .cat
            .foreign_keys
            .iter()
            .filter(|k| {
                k.schema == rel.schema
                    && k.referenced_schema == rel.schema
                    && k.relation == rel.name
            })
            .collect();
        fks.sort_by(|a, b| {
            locale_cmp(&a.name, &b.name)
                .then_with(|| locale_cmp(&a.referenced_relation, &b.referenced_relation))
                .then_with(|| a.referenced_columns.cmp(&b.referenced_columns))
        });
        if fks.is_empty() {
            out.push_str("        Relationships: []\n");
            return;
        }
        out.push_str("        Relationships: [\n");
        for k in fks {
            out.push_str("          {\n");
            let _ = writeln!(out, "            foreignKeyName: {}", quote(&k.name));
            let _ = writeln!(out, "            columns: {}", list(&k.columns));
            let _ = writeln!(out, "            isOneToOne: {}", k.one_to_one);
            let _ = writeln!(
                out,
                "            referencedRelation: {}",
                quote(&k.referenced_relation)
            );
            let _ = writeln!(
                out,
                "            referencedColumns: {}",
                list(&k.referenced_columns)
            );
            out.push_str("          },\n");
        }
        out.push_str("        ]\n");
    }

    fn args(&self, f: &Function) -> String {
        let inputs: Vec<String> = f
            .args
            .iter()
            .filter(|a| is_input(a.mode))
            .map(|a| {
                let opt = if a.has_default { "?" } else { "" };
                // A variadic argument is sent as an array: its type is the array type already.
                format!("{}{opt}: {}", key(&a.name), self.ts(a.type_oid))
            })
            .collect();
        if inputs.is_empty() {
            "Record<PropertyKey, never>".into()
        } else {
            format!("{{ {} }}", inputs.join("; "))
        }
    }

    fn returns(&self, out: &mut String, f: &Function) {
        let set = if f.returns_set { "[]" } else { "" };
        let table: Vec<String> = f
            .args
            .iter()
            .filter(|a| a.mode == 't')
            .map(|a| format!("{}: {}", key(&a.name), self.ts(a.type_oid)))
            .collect();
        let relation = self
            .cat
            .types
            .get(&f.returns)
            .filter(|t| t.kind == 'c')
            .and_then(|t| self.cat.relation(t.relid))
            .filter(|r| r.kind != 'c');
        let members = if !table.is_empty() {
            table
        } else if let Some(r) = relation {
            sorted(&r.columns)
                .iter()
                .map(|c| self.row_member(c))
                .collect()
        } else {
            let _ = writeln!(out, "        Returns: {}{set}", self.ts(f.returns));
            return;
        };
        out.push_str("        Returns: {\n");
        for m in members {
            let _ = writeln!(out, "          {m}");
        }
        let _ = writeln!(out, "        }}{set}");
    }

    /// A PostgreSQL type as postgres-meta maps it.
    fn ts(&self, oid: u32) -> String {
        let Some(t) = self.cat.types.get(&oid) else {
            return "unknown".into();
        };
        match t.name.as_str() {
            "bool" => return "boolean".into(),
            "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" => return "number".into(),
            "bytea" | "bpchar" | "varchar" | "date" | "text" | "citext" | "time" | "timetz"
            | "timestamp" | "timestamptz" | "uuid" | "vector" => return "string".into(),
            "json" | "jsonb" => return "Json".into(),
            "void" => return "undefined".into(),
            "record" => return "Record<string, unknown>".into(),
            _ => {}
        }
        if t.elem != 0 && t.name.starts_with('_') {
            let inner = self.ts(t.elem);
            return if inner.contains(' ') {
                format!("({inner})[]")
            } else {
                format!("{inner}[]")
            };
        }
        match t.kind {
            'd' => self.ts(t.base),
            'e' if self.exposed(&t.schema) => {
                format!(
                    "Database[{}][\"Enums\"][{}]",
                    quote(&t.schema),
                    quote(&t.name)
                )
            }
            'e' => t
                .labels
                .iter()
                .map(|l| quote(l))
                .collect::<Vec<_>>()
                .join(" | "),
            'c' => match self.cat.relation(t.relid) {
                Some(r) if self.exposed(&r.schema) => {
                    let group = match r.kind {
                        'c' => "CompositeTypes",
                        'v' | 'm' => "Views",
                        _ => "Tables",
                    };
                    let row = if r.kind == 'c' { "" } else { "[\"Row\"]" };
                    format!(
                        "Database[{}][\"{group}\"][{}]{row}",
                        quote(&r.schema),
                        quote(&r.name)
                    )
                }
                _ => "unknown".into(),
            },
            _ => "unknown".into(),
        }
    }
}

fn is_input(mode: char) -> bool {
    matches!(mode, 'i' | 'b' | 'v')
}

fn null(nullable: bool) -> &'static str {
    if nullable { " | null" } else { "" }
}

/// Columns by name, as postgres-meta sorts them.
fn sorted(cols: &[Column]) -> Vec<&Column> {
    let mut cs: Vec<&Column> = cols.iter().collect();
    cs.sort_by(|a, b| locale_cmp(&a.name, &b.name));
    cs
}

/// `name: {` … `}` with one member a line; `name: {}` when empty.
fn block(out: &mut String, indent: usize, name: &str, members: &[String]) {
    let pad = " ".repeat(indent);
    if members.is_empty() {
        let _ = writeln!(out, "{pad}{}: {{}}", key(name));
        return;
    }
    let _ = writeln!(out, "{pad}{}: {{", key(name));
    for m in members {
        let _ = writeln!(out, "{pad}  {m}");
    }
    let _ = writeln!(out, "{pad}}}");
}

/// A property name: bare when it is an identifier, quoted otherwise (prettier's `as-needed`).
fn key(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident { name.to_string() } else { quote(name) }
}

/// A TypeScript string literal (JSON's escaping).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", q.join(", "))
}

/// Orders names as JavaScript's `localeCompare` does for identifiers: punctuation before digits
/// before letters, letters without regard to case first.
fn locale_cmp(a: &str, b: &str) -> Ordering {
    fn class(c: char) -> (u8, char) {
        if c.is_alphabetic() {
            (2, c.to_ascii_lowercase())
        } else if c.is_numeric() {
            (1, c)
        } else {
            (0, c)
        }
    }
    let ka: Vec<_> = a.chars().map(class).collect();
    let kb: Vec<_> = b.chars().map(class).collect();
    ka.cmp(&kb).then_with(|| b.cmp(a))
}

/// The helper types, as supabase's generator prints them.
fn helpers() -> String {
    let table_like = |name: &str, part: &str, infer: &str, with_views: bool| -> String {
        let keys = if with_views {
            "keyof (DefaultSchema[\"Tables\"] & DefaultSchema[\"Views\"])".to_string()
        } else {
            "keyof DefaultSchema[\"Tables\"]".to_string()
        };
        let of_schema = if with_views {
            "keyof (Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Tables\"] &\n        Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Views\"])".to_string()
        } else {
            "keyof Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Tables\"]".to_string()
        };
        let in_schema = if with_views {
            "(Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Tables\"] &\n      Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Views\"])[TableName]".to_string()
        } else {
            "Database[DefaultSchemaTableNameOrOptions[\"schema\"]][\"Tables\"][TableName]"
                .to_string()
        };
        let in_default = if with_views {
            "(DefaultSchema[\"Tables\"] &\n        DefaultSchema[\"Views\"])[DefaultSchemaTableNameOrOptions]".to_string()
        } else {
            "DefaultSchema[\"Tables\"][DefaultSchemaTableNameOrOptions]".to_string()
        };
        let default_keys = if with_views {
            "keyof (DefaultSchema[\"Tables\"] &\n        DefaultSchema[\"Views\"])".to_string()
        } else {
            "keyof DefaultSchema[\"Tables\"]".to_string()
        };
        format!(
            "
export type {name}<
  DefaultSchemaTableNameOrOptions extends
    | {keys}
    | {{ schema: keyof Database }},
  TableName extends DefaultSchemaTableNameOrOptions extends {{
    schema: keyof Database
  }}
    ? {of_schema}
    : never = never,
> = DefaultSchemaTableNameOrOptions extends {{ schema: keyof Database }}
  ? {in_schema} extends {{
      {part}: infer {infer}
    }}
    ? {infer}
    : never
  : DefaultSchemaTableNameOrOptions extends {default_keys}
    ? {in_default} extends {{
        {part}: infer {infer}
      }}
      ? {infer}
      : never
    : never
"
        )
    };
    let by_name = |name: &str, param: &str, member: &str, group: &str| -> String {
        format!(
            "
export type {name}<
  {param}NameOrOptions extends
    | keyof DefaultSchema[\"{group}\"]
    | {{ schema: keyof Database }},
  {member}Name extends {param}NameOrOptions extends {{
    schema: keyof Database
  }}
    ? keyof Database[{param}NameOrOptions[\"schema\"]][\"{group}\"]
    : never = never,
> = {param}NameOrOptions extends {{ schema: keyof Database }}
  ? Database[{param}NameOrOptions[\"schema\"]][\"{group}\"][{member}Name]
  : {param}NameOrOptions extends keyof DefaultSchema[\"{group}\"]
    ? DefaultSchema[\"{group}\"][{param}NameOrOptions]
    : never
"
        )
    };
    let mut s = format!(
        "\ntype DefaultSchema = Database[Extract<keyof Database, {}>]\n",
        quote(DEFAULT_SCHEMA)
    );
    s.push_str(&table_like("Tables", "Row", "R", true));
    s.push_str(&table_like("TablesInsert", "Insert", "I", false));
    s.push_str(&table_like("TablesUpdate", "Update", "U", false));
    s.push_str(&by_name("Enums", "DefaultSchemaEnum", "Enum", "Enums"));
    s.push_str(&by_name(
        "CompositeTypes",
        "PublicCompositeType",
        "CompositeType",
        "CompositeTypes",
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_order() {
        assert_eq!(key("films"), "films");
        assert_eq!(key("my-table"), "\"my-table\"");
        assert_eq!(key("1st"), "\"1st\"");
        let mut names = vec!["b", "a_b", "A", "a1", "ab"];
        names.sort_by(|a, b| locale_cmp(a, b));
        assert_eq!(names, vec!["A", "a_b", "a1", "ab", "b"]);
    }
}

//! Privileges as clients read them: `has_table_privilege()` and its siblings (registered per
//! session, since they answer for its user), `pg_class.relacl` (psql's `\dp`) and
//! `information_schema.table_privileges` / `role_table_grants`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::functions::{oid_arg, udf};
use super::oids::RelationOids;
use crate::catalog::privileges::{Privilege, PUBLIC};
use crate::catalog::users::Users;
use crate::catalog::{Catalog, Namespace};
use crate::sql::access::{self, Identity};
use crate::sql::parser::ObjectType;
use crate::sql::settings::Settings;
use crate::sync::UnpoisonedRw;

/// What the functions need to know who asks.
#[derive(Clone)]
pub struct Asker {
    pub users: Weak<Users>,
    pub catalog: Weak<Catalog>,
    pub oids: Arc<RelationOids>,
    pub settings: Arc<RwLock<Settings>>,
    pub login_role: Arc<AtomicBool>,
}

impl Asker {
    /// The session's identity, or that of the role named by a first argument.
    fn identity(&self, users: &Users, role: Option<&ScalarValue>) -> Identity {
        let named = role.and_then(|r| match r {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                Some(s.clone())
            }
            _ => None,
        });
        match named {
            Some(name) => access::identity_of(users, Some(name), true),
            None => {
                let user = self.settings.read_locked().get("session_authorization").ok();
                access::identity_of(users, user, self.login_role.load(Ordering::Relaxed))
            }
        }
    }

    fn relation(&self, catalog: &Catalog, table: &ScalarValue) -> Option<crate::catalog::CatalogObject> {
        let name = match table {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s))
                if s.parse::<i32>().is_err() =>
            {
                let s = s.strip_prefix("public.").unwrap_or(s);
                match s.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => s.to_lowercase(),
                }
            }
            other => self.oids.name(oid_arg(other)?)?,
        };
        catalog.get(Namespace::Relation, &name)
    }
}

/// The privileges a `'SELECT, INSERT WITH GRANT OPTION'` argument names.
fn privileges_named(arg: &ScalarValue) -> Vec<String> {
    let ScalarValue::Utf8(Some(text)) = arg.cast_to(&DataType::Utf8).unwrap_or(ScalarValue::Utf8(None)) else {
        return vec![];
    };
    text.split(',')
        .map(|p| p.trim().to_ascii_uppercase().trim_end_matches(" WITH GRANT OPTION").trim().to_string())
        .collect()
}

/// `has_table_privilege`, `has_any_column_privilege`, `has_schema_privilege`,
/// `has_database_privilege`: what the asking session (or a named role) may do.
pub fn functions(asker: Asker) -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    for name in ["has_table_privilege", "has_any_column_privilege"] {
        let a = asker.clone();
        out.push(udf(name, &[2, 3], DataType::Boolean, move |args| {
            let (Some(users), Some(catalog)) = (a.users.upgrade(), a.catalog.upgrade()) else {
                return ScalarValue::Boolean(None);
            };
            let (role, table, privileges) = match args {
                [role, table, p] => (Some(role), table, p),
                [table, p] => (None, table, p),
                _ => return ScalarValue::Boolean(None),
            };
            if table.is_null() {
                return ScalarValue::Boolean(None);
            }
            let who = a.identity(&users, role);
            // Catalog tables (pg_catalog, information_schema, hw_catalog) are readable by all.
            let Some(obj) = a.relation(&catalog, table) else { return ScalarValue::Boolean(Some(true)) };
            let held = privileges_named(privileges)
                .iter()
                .filter_map(|p| Privilege::parse(p))
                .any(|p| access::holds(&catalog, &who, &obj, p));
            ScalarValue::Boolean(Some(held))
        }));
    }
    for name in ["has_schema_privilege", "has_database_privilege"] {
        let a = asker.clone();
        out.push(udf(name, &[2, 3], DataType::Boolean, move |args| {
            let (Some(users), Some(catalog)) = (a.users.upgrade(), a.catalog.upgrade()) else {
                return ScalarValue::Boolean(None);
            };
            let (role, privileges) = match args {
                [role, _, p] => (Some(role), p),
                [_, p] => (None, p),
                _ => return ScalarValue::Boolean(None),
            };
            let who = a.identity(&users, role);
            // USAGE, CONNECT and TEMPORARY every role has; CREATE is the right to create objects.
            let held = privileges_named(privileges).iter().any(|p| p != "CREATE" || access::may_create(&catalog, &who));
            ScalarValue::Boolean(Some(held))
        }));
    }
    out
}

/// `information_schema.table_privileges` (and `role_table_grants`, the same rows): one row
/// per privilege held on a relation, the owner's included.
#[derive(Debug)]
pub struct TablePrivileges {
    catalog: Weak<Catalog>,
    schema: SchemaRef,
}

impl TablePrivileges {
    pub fn new(catalog: Weak<Catalog>) -> Self {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let schema = Arc::new(Schema::new(
            [
                "grantor",
                "grantee",
                "table_catalog",
                "table_schema",
                "table_name",
                "privilege_type",
                "is_grantable",
                "with_hierarchy",
            ]
            .map(text)
            .to_vec(),
        ));
        TablePrivileges { catalog, schema }
    }
}

#[async_trait]
impl TableProvider for TablePrivileges {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut rows: Vec<Vec<(&str, ScalarValue)>> = Vec::new();
        if let Some(catalog) = self.catalog.upgrade() {
            let mut relations = catalog.list(ObjectType::Table);
            relations.extend(catalog.list(ObjectType::View));
            relations.extend(catalog.list(ObjectType::MaterializedView));
            for obj in relations {
                let owner = access::owner_of(&catalog, &obj);
                let acl = catalog.privileges().get(obj.entry.id);
                let mut held: Vec<(String, String, Privilege, bool)> = access::grantable(obj.object_type())
                    .iter()
                    .map(|p| (owner.clone(), owner.clone(), *p, true))
                    .collect();
                for (grantee, g) in &acl.grants {
                    let grantee = if grantee == PUBLIC { "PUBLIC".to_string() } else { grantee.clone() };
                    held.extend(g.privileges.iter().map(|p| (g.grantor.clone(), grantee.clone(), *p, false)));
                }
                for (grantor, grantee, p, grantable) in held {
                    let t = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
                    rows.push(vec![
                        ("grantor", t(&grantor)),
                        ("grantee", t(&grantee)),
                        ("table_catalog", t(crate::sql::DATABASE)),
                        ("table_schema", t("public")),
                        ("table_name", t(&obj.entry.name)),
                        ("privilege_type", t(p.keyword())),
                        ("is_grantable", t(if grantable { "YES" } else { "NO" })),
                        ("with_hierarchy", t(if p == Privilege::Select { "YES" } else { "NO" })),
                    ]);
                }
            }
        }
        let batch = super::batch_of(&self.schema, &rows)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}

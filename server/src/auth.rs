//! Authentication: bearer keys from the config, each implying its tenant and a role.
//! Keys are compared in constant time; with no keys at all the server runs open (only
//! on a loopback address), where every request is an admin of the tenant it names.

use axum::http::HeaderMap;

use crate::config::Config;
use crate::error::ApiError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Portal,
    Admin,
}

/// Who is calling: the tenant and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub role: Role,
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct Auth {
    keys: Vec<(Vec<u8>, String, Role)>,
}

/// The tenant of requests that name none.
pub const DEFAULT_TENANT: &str = "default";

impl Auth {
    pub fn from_config(config: &Config) -> Self {
        let mut keys = Vec::new();
        for (tenant, t) in &config.tenants {
            for key in &t.admin_keys {
                keys.push((key.as_bytes().to_vec(), tenant.clone(), Role::Admin));
            }
            for key in &t.portal_keys {
                keys.push((key.as_bytes().to_vec(), tenant.clone(), Role::Portal));
            }
        }
        Self { keys }
    }

    /// Whether the server runs without keys.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller of a request, from its `Authorization` and `X-Tenant` headers.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let named = match headers.get("x-tenant") {
            Some(value) => {
                let name = value
                    .to_str()
                    .ok()
                    .filter(|n| allot_engine::ids::is_valid_code(n))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "X-Tenant",
                            "X-Tenant must be a code of 1-64 [A-Za-z0-9._-]",
                        )
                    })?;
                Some(name.to_owned())
            }
            None => None,
        };
        if self.is_open() {
            let tenant = named.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
            return Ok(Caller {
                tenant,
                role: Role::Admin,
            });
        }
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <key>`"))?;
        let (tenant, role) = self
            .lookup(key.trim().as_bytes())
            .ok_or_else(|| ApiError::unauthorized("unknown key"))?;
        if let Some(named) = named {
            if named != tenant {
                return Err(ApiError::forbidden(
                    "the key does not belong to that tenant",
                ));
            }
        }
        Ok(Caller { tenant, role })
    }

    /// Compares against every key, each in constant time, so timing reveals neither
    /// which key matched nor how much of it.
    fn lookup(&self, key: &[u8]) -> Option<(String, Role)> {
        let mut found = None;
        for (candidate, tenant, role) in &self.keys {
            if constant_time_eq(candidate, key) {
                found = Some((tenant.clone(), *role));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantConfig;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        let mut config = Config::default();
        config.tenants.insert(
            "acme".into(),
            TenantConfig {
                admin_keys: vec!["adm".into()],
                portal_keys: vec!["por".into()],
                ..TenantConfig::default()
            },
        );
        Auth::from_config(&config)
    }

    fn headers(key: Option<&str>, tenant: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {k}")).expect("ascii"),
            );
        }
        if let Some(t) = tenant {
            h.insert("x-tenant", HeaderValue::from_str(t).expect("ascii"));
        }
        h
    }

    #[test]
    fn a_key_implies_its_tenant_and_refuses_another() {
        let a = auth();
        assert_eq!(
            a.caller(&headers(Some("por"), None)).expect("ok"),
            Caller {
                tenant: "acme".into(),
                role: Role::Portal
            }
        );
        assert_eq!(
            a.caller(&headers(Some("adm"), Some("acme")))
                .expect("ok")
                .role,
            Role::Admin
        );
        assert_eq!(
            a.caller(&headers(Some("adm"), Some("other")))
                .expect_err("403")
                .status
                .as_u16(),
            403
        );
        assert_eq!(
            a.caller(&headers(Some("nope"), None))
                .expect_err("401")
                .status
                .as_u16(),
            401
        );
        assert_eq!(
            a.caller(&headers(None, None))
                .expect_err("401")
                .status
                .as_u16(),
            401
        );
    }

    #[test]
    fn open_mode_makes_everyone_admin_of_the_named_tenant() {
        let a = Auth::default();
        let caller = a.caller(&headers(None, Some("t1"))).expect("ok");
        assert_eq!(
            caller,
            Caller {
                tenant: "t1".into(),
                role: Role::Admin
            }
        );
        assert_eq!(
            a.caller(&headers(None, None)).expect("ok").tenant,
            "default"
        );
    }
}

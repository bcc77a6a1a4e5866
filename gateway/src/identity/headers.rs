//! The header names an upstream receives identity under. Client-sent
//! spellings of them are removed by `edge::header_policy`.

/// The header names an upstream receives identity under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub customer_id: String,
    pub email: String,
    pub name: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            customer_id: "x-customer-id".into(),
            email: "x-customer-email".into(),
            name: "x-customer-name".into(),
        }
    }
}

impl IdentityHeaders {
    pub fn names(&self) -> [&str; 3] {
        [&self.customer_id, &self.email, &self.name]
    }
}

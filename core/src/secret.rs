//! Which values a listing hides unless asked: the rule the `environ`
//! commands of every plugin share, so that a secret does not reach a
//! terminal's scrollback, a shared screen or a pasted log by default.

/// Parts of a variable's name that mark its value as secret, compared
/// without regard to case (`API_KEY`, `github_token`, `DB_PASSWORD`…),
/// and the request headers of a WSGI environ that carry credentials
/// (`HTTP_AUTHORIZATION`, `HTTP_COOKIE`).
pub const SECRET_NAME_PARTS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTHORIZATION",
    "COOKIE",
];

/// What a hidden value shows instead.
pub const MASK: &str = "********";

/// True when a variable named `name` probably holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// How `value` of the variable `name` is shown by default: `None` to show
/// it as it is; otherwise the text to show instead, which is [`MASK`] for
/// a non-empty value under a secret-looking name, and the value with only
/// its password masked for a URL that carries one
/// (`postgres://app:********@db/app`).
pub fn masked(name: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if looks_secret(name) {
        return Some(MASK.to_owned());
    }
    mask_url_passwords(value)
}

/// How a listing shows what [`masked`] returned: [`MASK`] marked as
/// masked, or the URL with its password masked, quoted by `quote` as the
/// listing quotes its other values.
pub fn shown(mask: &str, quote: impl FnOnce(&str) -> String) -> String {
    if mask == MASK {
        format!("{MASK} (masked)")
    } else {
        format!("{} (password masked)", quote(mask))
    }
}

/// `value` with the password of every `scheme://user:password@` in it
/// masked (a DSN, or a list of them), or `None` when it has none.
fn mask_url_passwords(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        // The user information ends at the last '@' before the path: a
        // password may itself contain '@' or ':' when not escaped.
        let authority_end = rest.find(['/', '?', '#', ' ', ',']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(user_end) => match authority[..user_end].find(':') {
                Some(colon) if colon + 1 < user_end => {
                    out.push_str(&authority[..=colon]);
                    out.push_str(MASK);
                    out.push_str(&authority[user_end..]);
                    changed = true;
                }
                _ => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_are_masked_whatever_their_case() {
        for name in [
            "API_KEY",
            "github_token",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "pgpasswd",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "HTTP_AUTHORIZATION",
            "HTTP_COOKIE",
        ] {
            assert_eq!(masked(name, "hunter2").as_deref(), Some(MASK), "{name}");
        }
        assert_eq!(masked("API_KEY", ""), None, "an empty value hides nothing");
        assert_eq!(masked("PATH", "/usr/bin:/bin"), None);
        assert_eq!(masked("HOME", "/root"), None);
    }

    #[test]
    fn only_the_password_of_a_url_is_masked() {
        assert_eq!(
            masked("DATABASE_URL", "postgres://app:s3cr3t@db.internal:5432/app").as_deref(),
            Some("postgres://app:********@db.internal:5432/app")
        );
        assert_eq!(
            masked("BROKERS", "amqp://u:p@a/v,amqp://u:q@b/v").as_deref(),
            Some("amqp://u:********@a/v,amqp://u:********@b/v")
        );
        assert_eq!(
            masked("REDIS", "redis://:pa@ss@cache:6379/0").as_deref(),
            Some("redis://:********@cache:6379/0"),
            "an unescaped '@' in the password is masked with it"
        );
        assert_eq!(
            masked("MIRROR", "https://user@host/path"),
            None,
            "no password"
        );
        assert_eq!(
            masked("SITE", "https://example.com/a@b"),
            None,
            "an '@' in the path"
        );
        assert_eq!(masked("WEIRD", "://"), None);
    }
}

//! `${NAME}` interpolation of environment variables in string values.

/// Why a string could not be interpolated. Several can occur in one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EnvError {
    /// `${NAME}` names a variable that is not set.
    Missing(String),
    /// `${...}` holds something that is not a variable name.
    BadName(String),
    /// `${` without a closing `}`.
    Unterminated,
}

impl EnvError {
    /// The problem message for this error (never includes a value).
    pub(super) fn message(&self) -> String {
        match self {
            EnvError::Missing(name) => format!("environment variable {name} is not set"),
            EnvError::BadName(name) => format!(
                "\"${{{name}}}\" is not an environment variable name (letters, digits and _, not starting with a digit); write $${{ for a literal \"${{\""
            ),
            EnvError::Unterminated => {
                "\"${\" without a closing \"}\"; write ${NAME} for an environment variable, or $${ for a literal \"${\"".to_string()
            }
        }
    }
}

/// Replaces every `${NAME}` in `raw` by `env(NAME)`; `$${` is a literal
/// `${`, and a `$` anywhere else is itself.
///
/// Collects every missing or malformed reference rather than stopping at the
/// first.
pub(super) fn interpolate(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvError>> {
    if !raw.contains('$') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                errors.push(EnvError::Unterminated);
                rest = "";
                break;
            };
            let name = &after[..end];
            if !is_var_name(name) {
                errors.push(EnvError::BadName(name.to_string()));
            } else if let Some(value) = env(name) {
                out.push_str(&value);
            } else if !errors.contains(&EnvError::Missing(name.to_string())) {
                errors.push(EnvError::Missing(name.to_string()));
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the portable shell variable name.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${TOKEN}".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_anywhere_in_the_string() {
        assert_eq!(interpolate("${TOKEN}", &env), Ok("s3cret".into()));
        assert_eq!(
            interpolate("Bearer ${TOKEN}-${EMPTY}!", &env),
            Ok("Bearer s3cret-!".into())
        );
        assert_eq!(interpolate("plain", &env), Ok("plain".into()));
    }

    #[test]
    fn double_dollar_brace_is_a_literal() {
        assert_eq!(interpolate("$${TOKEN}", &env), Ok("${TOKEN}".into()));
        // Leftmost first: a lone `$`, then `$${`.
        assert_eq!(interpolate("a$$${TOKEN}", &env), Ok("a$${TOKEN}".into()));
    }

    #[test]
    fn a_lone_dollar_is_itself() {
        assert_eq!(
            interpolate("$5 and $$ and $", &env),
            Ok("$5 and $$ and $".into())
        );
    }

    #[test]
    fn substituted_values_are_not_interpolated_again() {
        assert_eq!(interpolate("${DOLLAR}", &env), Ok("${TOKEN}".into()));
    }

    #[test]
    fn every_missing_variable_is_reported_once() {
        assert_eq!(
            interpolate("${A}:${TOKEN}:${B}:${A}", &env),
            Err(vec![
                EnvError::Missing("A".into()),
                EnvError::Missing("B".into())
            ])
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(
            interpolate("${1X}", &env),
            Err(vec![EnvError::BadName("1X".into())])
        );
        assert_eq!(
            interpolate("${}", &env),
            Err(vec![EnvError::BadName(String::new())])
        );
        assert_eq!(
            interpolate("x${TOKEN", &env),
            Err(vec![EnvError::Unterminated])
        );
    }

    #[test]
    fn messages_name_the_variable() {
        let message = EnvError::Missing("CRM_TOKEN".into()).message();
        assert_eq!(message, "environment variable CRM_TOKEN is not set");
    }
}

//! The plugins a config text names, with the key and line of the first
//! webhook naming each, found even when the config has other problems: so
//! `statushook check` can report a plugin that does not load together with
//! everything else.

use toml::de::{DeTable, DeValue};

use super::env::interpolate;
use super::reader::{Value, index, join, line_at};
use super::webhook::is_plugin_name;

/// A plugin named by a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginRef {
    /// The built-in name or path, as the webhook gives it (after `${NAME}`
    /// substitution).
    pub(crate) plugin: String,
    /// The key of the first webhook that names it, e.g.
    /// `bots[0].webhooks[1].plugin`.
    pub(crate) key: String,
    /// The line of that key.
    pub(crate) line: usize,
}

/// Every distinct plugin of `text`, in file order. Values that are not
/// plugin names at all, or that reference a missing variable, are left out:
/// [`parse`](super::parse) reports those.
pub(crate) fn plugin_refs(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<PluginRef> {
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut refs: Vec<PluginRef> = Vec::new();
    for (b, bot) in array(doc.get_ref().get("bots")).iter().enumerate() {
        let DeValue::Table(bot) = bot.get_ref() else {
            continue;
        };
        for (w, webhook) in array(bot.get("webhooks")).iter().enumerate() {
            let Some(value) = webhook.get_ref().get("plugin") else {
                continue;
            };
            let DeValue::String(raw) = value.get_ref() else {
                continue;
            };
            let Ok(plugin) = interpolate(raw, env) else {
                continue;
            };
            if !is_plugin_name(&plugin) || refs.iter().any(|r| r.plugin == plugin) {
                continue;
            }
            let webhook_path = index(&join(&index("bots", b), "webhooks"), w);
            refs.push(PluginRef {
                plugin,
                key: join(&webhook_path, "plugin"),
                line: line_at(text, value.span().start),
            });
        }
    }
    refs
}

/// The entries of an array value; none for anything else.
fn array<'t, 'i>(value: Option<&'t Value<'i>>) -> &'t [Value<'i>] {
    match value.map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_plugin_once_with_its_first_key_and_line() {
        let text = r#"[[bots]]
id = "a"
  [[bots.webhooks]]
  plugin = "jelou"
  [[bots.webhooks]]
  plugin = "${DIR}/crm.wasm"
[[bots]]
id = "b"
  [[bots.webhooks]]
  plugin = "jelou"
  [[bots.webhooks]]
  plugin = "not-a-plugin"
  [[bots.webhooks]]
  plugin = "${MISSING}.wasm"
  [[bots.webhooks]]
  plugin = "engage"
"#;
        let env = |name: &str| (name == "DIR").then(|| "plugins".to_string());
        let refs: Vec<_> = plugin_refs(text, &env)
            .into_iter()
            .map(|r| (r.plugin, r.key, r.line))
            .collect();
        assert_eq!(
            refs,
            [
                ("jelou".into(), "bots[0].webhooks[0].plugin".into(), 4),
                (
                    "plugins/crm.wasm".into(),
                    "bots[0].webhooks[1].plugin".into(),
                    6
                ),
                ("engage".into(), "bots[1].webhooks[3].plugin".into(), 16),
            ]
        );
    }

    #[test]
    fn text_that_is_not_toml_names_no_plugin() {
        assert!(plugin_refs("[[bots]\n", &|_| None).is_empty());
        assert!(plugin_refs("bots = 1\n", &|_| None).is_empty());
    }
}

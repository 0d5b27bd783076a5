//! Who may act for which bot: ingest tokens, admin tokens and Meta app
//! secrets, each either server-wide (any bot) or listed under bots (those
//! bots only).
//!
//! Tokens are looked up by their SHA-256, so a request costs one hash and
//! one map lookup whatever the number of bots, and nothing secret is
//! compared byte by byte (no timing leak). Meta app secrets cannot be looked
//! up (a signature is checked by computing it), so each is tried, all of
//! them every time.

use std::collections::{HashMap, HashSet};

use crate::config::Config;
use crate::ingest::meta::Signature;

/// The bots a token or secret may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Listed under `[server]` (or `[meta]`): every bot.
    AnyBot,
    /// Listed under these bots: them only.
    Bots(HashSet<String>),
}

impl Scope {
    /// Whether the scope covers `bot`.
    pub fn allows(&self, bot: &str) -> bool {
        match self {
            Scope::AnyBot => true,
            Scope::Bots(bots) => bots.contains(bot),
        }
    }

    /// Adds `other`'s bots: a secret listed in several places acts for all
    /// of them.
    fn widen(&mut self, other: Scope) {
        match (self, other) {
            (Scope::AnyBot, _) => {}
            (this, Scope::AnyBot) => *this = Scope::AnyBot,
            (Scope::Bots(mine), Scope::Bots(theirs)) => mine.extend(theirs),
        }
    }
}

/// What a token may do for a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The token is server-wide: any bot, and it may learn which exist.
    AnyBot,
    /// The token is the bot's own.
    OwnBot,
    /// The token is valid, but not for this bot, or there is no such bot: a
    /// scoped token is answered alike for both (`403`), so it cannot
    /// enumerate bot ids.
    NotThisBot,
    /// The token is not valid at all (`401`).
    Invalid,
}

impl Access {
    /// Whether the token may act for the bot.
    pub fn is_allowed(self) -> bool {
        matches!(self, Access::AnyBot | Access::OwnBot)
    }
}

/// Bearer tokens by their digest, each with its scope.
#[derive(Debug, Default)]
pub struct Tokens(HashMap<[u8; 32], Scope>);

impl Tokens {
    /// `server` tokens act for any bot; each bot's tokens (`of_bot` picks
    /// them from its config) for that bot.
    pub fn build(
        config: &Config,
        server: &[String],
        of_bot: impl Fn(&crate::config::BotConfig) -> &[String],
    ) -> Self {
        let mut tokens = Tokens::default();
        for bot in &config.bots {
            for token in of_bot(bot) {
                tokens.add(token, Scope::Bots(HashSet::from([bot.id.clone()])));
            }
        }
        for token in server {
            tokens.add(token, Scope::AnyBot);
        }
        tokens
    }

    fn add(&mut self, token: &str, scope: Scope) {
        match self.0.get_mut(&digest(token)) {
            Some(existing) => existing.widen(scope),
            None => {
                self.0.insert(digest(token), scope);
            }
        }
    }

    /// What `token` may do for `bot`.
    pub fn access(&self, token: &str, bot: &str) -> Access {
        match self.0.get(&digest(token)) {
            None => Access::Invalid,
            Some(Scope::AnyBot) => Access::AnyBot,
            Some(scope) if scope.allows(bot) => Access::OwnBot,
            Some(_) => Access::NotThisBot,
        }
    }

    /// The scope of `token`, if it is one of these.
    pub fn scope(&self, token: &str) -> Option<&Scope> {
        self.0.get(&digest(token))
    }
}

/// The Meta app secrets that may sign webhooks, each with its scope.
#[derive(Debug, Default)]
pub struct MetaApps(Vec<(String, Scope)>);

impl MetaApps {
    /// `[meta] app_secrets` for any bot, each bot's `meta_app_secrets` for
    /// that bot.
    pub fn build(config: &Config) -> Self {
        let mut apps: Vec<(String, Scope)> = Vec::new();
        let mut add =
            |secret: &String, scope: Scope| match apps.iter_mut().find(|(s, _)| s == secret) {
                Some((_, existing)) => existing.widen(scope),
                None => apps.push((secret.clone(), scope)),
            };
        for secret in config.meta.iter().flat_map(|m| &m.app_secrets) {
            add(secret, Scope::AnyBot);
        }
        for bot in &config.bots {
            for secret in &bot.meta_app_secrets {
                add(secret, Scope::Bots(HashSet::from([bot.id.clone()])));
            }
        }
        MetaApps(apps)
    }

    /// The bots the app that made `signature` over `body` may speak for;
    /// `None` when no configured secret made it. Every secret is tried,
    /// matched or not, so the time taken says nothing about which matched.
    pub fn signer(&self, signature: &Signature, body: &[u8]) -> Option<Scope> {
        let mut found: Option<Scope> = None;
        for (secret, scope) in &self.0 {
            if signature.made_with(secret.as_bytes(), body) {
                match &mut found {
                    Some(existing) => existing.widen(scope.clone()),
                    None => found = Some(scope.clone()),
                }
            }
        }
        found
    }
}

/// The SHA-256 of a token: what token lookups compare.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let text = r#"
[server]
ingest_tokens = ["server-ingest"]
admin_tokens = ["server-admin"]
[meta]
verify_token = "v"
app_secrets = ["shared-app"]
[[bots]]
id = "acme"
ingest_tokens = ["acme-ingest", "both"]
admin_tokens = ["acme-admin"]
meta_app_secrets = ["acme-app", "two-bot-app"]
[[bots]]
id = "globex"
ingest_tokens = ["both"]
meta_app_secrets = ["two-bot-app"]
[[bots]]
id = "initech"
ingest_tokens = ["server-ingest"]
"#;
        crate::config::parse(text, Path::new("config.toml"), &|_| None).expect("valid")
    }

    #[test]
    fn tokens_act_for_their_bots_only() {
        let config = config();
        let ingest = Tokens::build(&config, &config.server.ingest_tokens, |b| &b.ingest_tokens);
        assert_eq!(ingest.access("server-ingest", "acme"), Access::AnyBot);
        assert_eq!(ingest.access("server-ingest", "nobody"), Access::AnyBot);
        assert_eq!(ingest.access("acme-ingest", "acme"), Access::OwnBot);
        assert_eq!(ingest.access("acme-ingest", "globex"), Access::NotThisBot);
        // Unknown and forbidden are the same answer for a scoped token.
        assert_eq!(ingest.access("acme-ingest", "nobody"), Access::NotThisBot);
        assert_eq!(ingest.access("both", "globex"), Access::OwnBot);
        assert_eq!(ingest.access("both", "acme"), Access::OwnBot);
        assert_eq!(ingest.access("both", "initech"), Access::NotThisBot);
        assert_eq!(ingest.access("acme-admin", "acme"), Access::Invalid);
        let admin = Tokens::build(&config, &config.server.admin_tokens, |b| &b.admin_tokens);
        assert_eq!(admin.access("acme-admin", "acme"), Access::OwnBot);
        assert_eq!(admin.access("acme-ingest", "acme"), Access::Invalid);
        assert_eq!(admin.access("server-admin", "globex"), Access::AnyBot);
    }

    #[test]
    fn a_meta_signature_speaks_for_the_bots_of_its_secret() {
        let apps = MetaApps::build(&config());
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let signed = |secret: &str| {
            let header = crate::ingest::meta::signature::sign(secret.as_bytes(), body);
            Signature::parse(&header).expect("parses")
        };
        assert_eq!(
            apps.signer(&signed("shared-app"), body),
            Some(Scope::AnyBot)
        );
        let acme = apps.signer(&signed("acme-app"), body).expect("acme's app");
        assert!(acme.allows("acme") && !acme.allows("globex"));
        let two = apps
            .signer(&signed("two-bot-app"), body)
            .expect("shared by two");
        assert!(two.allows("acme") && two.allows("globex") && !two.allows("initech"));
        assert_eq!(apps.signer(&signed("someone-else"), body), None);
    }
}

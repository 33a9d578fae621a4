//! The built-in sign-in page (SPEC §9, `login_page: builtin`): what
//! `GET /auth/login` answers, and what a failed form sign-in answers again
//! with one generic message. Pure functions: the endpoint sets the status,
//! `Content-Type: text/html; charset=utf-8`, `Cache-Control: no-store` and
//! [`content_security_policy`].
//!
//! The page is plain HTML5 with no script at all and one inline `<style>`
//! (the policy allows `style-src 'unsafe-inline'` and nothing else): a
//! username and password form that posts to the sign-in endpoint with the
//! validated `rd`, and one "Sign in with …" link per identity provider
//! (SPEC §10). It fits a phone (viewport, inputs of 16px and more so iOS
//! does not zoom, 48px targets), uses the system fonts, and follows the
//! system's dark mode.
//!
//! Every interpolated value is HTML-escaped ([`escape`]), attributes are
//! always double-quoted, and a provider link whose `href` is not a path on
//! this origin or an `https` URL is left out (defense in depth: the hrefs
//! come from the config, never from the request).
//!
//! There is deliberately no `<meta name="referrer">`: with
//! `no-referrer` a browser sends `Origin: null` on the form's POST, which
//! the CSRF check refuses from browsers without Fetch Metadata.

use std::fmt::Write as _;

use http::header;
use http::{HeaderValue, Response, StatusCode};

use crate::body::Body;

/// The policy without extra `form-action` origins.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The name in the title and heading.
    pub app_name: &'a str,
    /// The form's POST target, the sign-in endpoint's path (`/auth/login`).
    pub action: &'a str,
    /// Where to go after signing in, already validated (SPEC §9 `rd`).
    pub rd: &'a str,
    /// Whether to show the one generic error message (a failed sign-in).
    pub error: bool,
    /// The identity providers to offer (SPEC §10); none: no section.
    pub providers: &'a [Provider<'a>],
}

/// One "Sign in with …" link.
#[derive(Debug, Clone, Copy)]
pub struct Provider<'a> {
    /// The provider's display name (`GitHub`).
    pub label: &'a str,
    /// Where the link goes: a path on this origin (the provider's start
    /// endpoint, with its `rd`) or an `https` URL.
    pub href: &'a str,
}

/// The message after a failed sign-in; it never says which part was wrong.
pub const ERROR_MESSAGE: &str = "Wrong username or password.";

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#eef0f3;--card:#fff;--fg:#16181d;--muted:#4a505a;\
--line:#767c87;--accent:#1a56b0;--on-accent:#fff;--err-bg:#fde8e6;--err-fg:#8c1d13}\
@media (prefers-color-scheme:dark){:root{--bg:#101317;--card:#1b2027;--fg:#eceff3;\
--muted:#b3b9c2;--line:#7d8591;--accent:#7fb0ff;--on-accent:#0b1220;--err-bg:#3d1714;\
--err-fg:#ffb8ad}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;padding:1rem;background:var(--bg);\
color:var(--fg);font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\
\"Helvetica Neue\",Arial,sans-serif}\
main{margin:auto;width:100%;max-width:24rem;padding:2rem 1.5rem;border-radius:.75rem;\
background:var(--card);box-shadow:0 1px 4px rgba(0,0,0,.25)}\
h1{margin:0 0 1.5rem;font-size:1.5rem;line-height:1.25;overflow-wrap:anywhere}\
label{display:block;margin:1rem 0 .375rem;font-weight:600}\
input{display:block;width:100%;min-height:3rem;padding:.625rem .75rem;font:inherit;\
font-size:1.125rem;color:var(--fg);background:var(--card);border:1px solid var(--line);\
border-radius:.5rem}\
button,.provider{display:block;width:100%;min-height:3rem;padding:.625rem .75rem;\
font:inherit;font-size:1.125rem;font-weight:600;text-align:center;border-radius:.5rem;\
overflow-wrap:anywhere}\
button{margin-top:1.5rem;border:0;color:var(--on-accent);background:var(--accent);\
cursor:pointer}\
.provider{margin-top:.75rem;color:var(--fg);border:1px solid var(--line);\
text-decoration:none}\
input:focus,button:focus-visible,.provider:focus-visible{outline:3px solid var(--accent);\
outline-offset:2px}\
.error{margin:0 0 1rem;padding:.75rem;border-radius:.5rem;color:var(--err-fg);\
background:var(--err-bg)}\
.or{margin:1.5rem 0 0;text-align:center;color:var(--muted)}";

/// The page's HTML.
pub fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<title>Sign in to ",
    );
    escape(&mut out, page.app_name);
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<main>\n<h1>Sign in to ");
    escape(&mut out, page.app_name);
    out.push_str("</h1>\n");
    if page.error {
        out.push_str("<p class=\"error\" role=\"alert\">");
        out.push_str(ERROR_MESSAGE);
        out.push_str("</p>\n");
    }
    out.push_str("<form method=\"post\" action=\"");
    escape(&mut out, page.action);
    out.push_str("\">\n<input type=\"hidden\" name=\"rd\" value=\"");
    escape(&mut out, page.rd);
    out.push_str(
        "\">\n<label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" autocorrect=\"off\" spellcheck=\"false\" required autofocus>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n",
    );
    let mut links = page.providers.iter().filter(|p| is_safe_href(p.href));
    if let Some(first) = links.next() {
        out.push_str("<nav aria-label=\"Other ways to sign in\">\n<p class=\"or\">or</p>\n");
        for p in std::iter::once(first).chain(links) {
            out.push_str("<a class=\"provider\" href=\"");
            escape(&mut out, p.href);
            out.push_str("\">Sign in with ");
            escape(&mut out, p.label);
            out.push_str("</a>\n");
        }
        out.push_str("</nav>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The page a browser gets when a sign-in through an identity provider is
/// refused (SPEC §10): one generic message, whatever the reason, and a
/// link back to the sign-in page.
pub fn render_refused(app_name: &str, retry: &str) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<title>Sign-in refused: ",
    );
    escape(&mut out, app_name);
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<main>\n<h1>Sign-in refused</h1>\n");
    out.push_str("<p class=\"error\" role=\"alert\">You could not be signed in to ");
    escape(&mut out, app_name);
    out.push_str(". Your account may not be allowed here, or the sign-in took too long.</p>\n");
    if is_safe_href(retry) {
        out.push_str("<a class=\"provider\" href=\"");
        escape(&mut out, retry);
        out.push_str("\">Back to sign-in</a>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A page of gatehouse's own (`html`) as an answer: HTML under `csp`, never
/// cached, never sniffed as anything else.
pub fn html_response(html: String, status: StatusCode, csp: HeaderValue) -> Response<Body> {
    let mut res = Response::new(Body::full(html));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// The page's `Content-Security-Policy`. `redirect_origins` are the
/// origins of `allowed_redirect_hosts` (`https://host[:port]`): the form
/// posts to this origin, which answers `303` to `rd`, and browsers apply
/// `form-action` to that redirect too. An entry that is not an `https`
/// origin is left out, so no config value can add a directive.
pub fn content_security_policy(redirect_origins: &[String]) -> HeaderValue {
    let origins = redirect_origins.iter().filter(|o| {
        crate::host::parse_origin(o.as_bytes())
            .is_ok_and(|o| o.scheme.eq_ignore_ascii_case("https"))
    });
    let mut policy =
        String::from("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
    for origin in origins {
        // Infallible: writing to a String.
        let _ = write!(policy, " {origin}");
    }
    policy.push_str("; frame-ancestors 'none'");
    // A parsed origin holds only letters, digits and `+-.:/[]_~`.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static(CSP))
}

/// Whether `href` may be a link: a path on this origin (one `/`, not `//`
/// or `/\`, which browsers read as another host) or an absolute `https`
/// URL with a valid host; never `javascript:`, `data:` or any other
/// scheme. Whitespace and control characters are refused anywhere, since
/// browsers strip them out of URLs (`java\tscript:` is `javascript:`).
fn is_safe_href(href: &str) -> bool {
    if href
        .bytes()
        .any(|b| b.is_ascii_control() || b.is_ascii_whitespace() || b == b'\\')
    {
        return false;
    }
    if let Some(rest) = href.strip_prefix('/') {
        return !rest.starts_with('/');
    }
    let Some(rest) = href
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .and_then(|_| href.get(8..))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    crate::host::parse(authority.as_bytes()).is_ok()
}

/// Appends `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in element
/// content and in quoted attribute values (HTML §13.1.2.3, OWASP XSS
/// prevention rule 1 and 2).
fn escape(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\"><script>alert('x')</script>&amp;";

    fn page<'a>(providers: &'a [Provider<'a>]) -> Page<'a> {
        Page {
            app_name: "Chat",
            action: "/auth/login",
            rd: "/chat",
            error: false,
            providers,
        }
    }

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape(&mut out, s);
        out
    }

    #[test]
    fn escape_replaces_every_character_that_ends_text_or_an_attribute() {
        assert_eq!(escaped(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(escaped("plain café ✓"), "plain café ✓");
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("&&"), "&amp;&amp;");
    }

    #[test]
    fn hostile_app_name_is_escaped_in_the_title_and_heading() {
        let html = render(&Page {
            app_name: HOSTILE,
            ..page(&[])
        });
        let want = "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;amp;";
        assert!(
            html.contains(&format!("<title>Sign in to {want}</title>")),
            "{html}"
        );
        assert!(
            html.contains(&format!("<h1>Sign in to {want}</h1>")),
            "{html}"
        );
        assert!(!html.contains(HOSTILE));
    }

    #[test]
    fn hostile_rd_and_action_stay_inside_their_attribute_values() {
        let html = render(&Page {
            rd: "/x\" onfocus=\"alert(1)\"><script>",
            action: "/auth/login\"><script>",
            ..page(&[])
        });
        assert!(html.contains(
            "<input type=\"hidden\" name=\"rd\" value=\"/x&quot; onfocus=&quot;alert(1)&quot;&gt;&lt;script&gt;\">"
        ));
        assert!(
            html.contains("<form method=\"post\" action=\"/auth/login&quot;&gt;&lt;script&gt;\">")
        );
    }

    #[test]
    fn hostile_provider_labels_and_hrefs_are_escaped() {
        let providers = [Provider {
            label: HOSTILE,
            href: "/auth/oidc/x?rd=%2Fchat&a=\"'<b>",
        }];
        let html = render(&page(&providers));
        assert!(html.contains(
            "<a class=\"provider\" href=\"/auth/oidc/x?rd=%2Fchat&amp;a=&quot;&#39;&lt;b&gt;\">\
             Sign in with &quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;amp;</a>"
        ), "{html}");
    }

    #[test]
    fn the_page_never_holds_a_script() {
        let providers = [
            Provider {
                label: HOSTILE,
                href: "/auth/oidc/a",
            },
            Provider {
                label: "b",
                href: "javascript:alert(1)",
            },
            Provider {
                label: "<SCRIPT>",
                href: "https://idp.example/<script>",
            },
        ];
        for error in [false, true] {
            let html = render(&Page {
                app_name: HOSTILE,
                action: HOSTILE,
                rd: HOSTILE,
                error,
                providers: &providers,
            });
            let lower = html.to_ascii_lowercase();
            assert!(!lower.contains("<script"), "{html}");
            assert!(!lower.contains("javascript:"), "{html}");
            assert!(!lower.contains(" on"), "an event handler attribute: {html}");
            assert_eq!(lower.matches("<style>").count(), 1);
        }
    }

    #[test]
    fn the_form_posts_username_password_and_rd() {
        let html = render(&page(&[]));
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(html
            .contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(html.contains("<form method=\"post\" action=\"/auth/login\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"rd\" value=\"/chat\">"));
        assert!(html.contains(
            "name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\""
        ));
        assert!(
            html.contains("name=\"password\" type=\"password\" autocomplete=\"current-password\"")
        );
        assert!(html.contains("<button type=\"submit\">Sign in</button>"));
        assert!(html.contains("prefers-color-scheme:dark"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn the_generic_error_appears_only_when_asked() {
        let html = render(&page(&[]));
        assert!(!html.contains(ERROR_MESSAGE));
        assert!(!html.contains("role=\"alert\""));
        let html = render(&Page {
            error: true,
            ..page(&[])
        });
        assert_eq!(html.matches(ERROR_MESSAGE).count(), 1);
        assert!(html.contains("<p class=\"error\" role=\"alert\">Wrong username or password.</p>"));
        let lower = html.to_ascii_lowercase();
        for telling in [
            "unknown user",
            "no such user",
            "wrong password",
            "not found",
            "locked",
        ] {
            assert!(!lower.contains(telling), "{telling}");
        }
    }

    #[test]
    fn each_provider_gets_one_sign_in_link_and_none_gets_no_section() {
        let html = render(&page(&[]));
        assert!(!html.contains("<nav"));
        assert!(!html.contains("Sign in with"));
        let providers = [
            Provider {
                label: "GitHub",
                href: "/auth/oidc/github?rd=%2Fchat",
            },
            Provider {
                label: "Example IdP",
                href: "https://idp.example.com/start",
            },
        ];
        let html = render(&page(&providers));
        assert_eq!(html.matches("<nav").count(), 1);
        assert_eq!(html.matches("<a ").count(), 2);
        assert!(html.contains(
            "<a class=\"provider\" href=\"/auth/oidc/github?rd=%2Fchat\">Sign in with GitHub</a>"
        ));
        assert!(html.contains("<a class=\"provider\" href=\"https://idp.example.com/start\">Sign in with Example IdP</a>"));
    }

    #[test]
    fn hrefs_that_are_not_paths_or_https_urls_are_not_links() {
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "http://idp.example.com/",
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example",
            "https://",
            "https:///path",
            "https://user@evil.example/",
            "https:evil.example",
            "https://evil.example\\@idp.example.com",
            "auth/oidc/github",
            "?rd=/",
            "#x",
            "",
        ] {
            assert!(!is_safe_href(bad), "{bad:?} passed");
            let providers = [Provider {
                label: "Bad",
                href: bad,
            }];
            let html = render(&page(&providers));
            assert!(!html.contains("<a "), "{bad:?} became a link");
            assert!(!html.contains("Sign in with Bad"), "{bad:?}");
            assert!(!html.contains("<nav"), "{bad:?}: an empty section");
        }
        for good in [
            "/",
            "/auth/oidc/github",
            "/auth/oidc/github?rd=%2Fchat%3Fa%3D1",
            "https://idp.example.com",
            "HTTPS://idp.example.com:8443/authorize?x=1#f",
            "https://[::1]:8443/",
        ] {
            assert!(is_safe_href(good), "{good:?} refused");
        }
        // The safe ones stay when a bad one is left out.
        let providers = [
            Provider {
                label: "Bad",
                href: "javascript:alert(1)",
            },
            Provider {
                label: "Good",
                href: "/auth/oidc/good",
            },
        ];
        let html = render(&page(&providers));
        assert_eq!(html.matches("<a ").count(), 1);
        assert!(html.contains("Sign in with Good"));
    }

    #[test]
    fn csp_is_exact_without_extra_origins() {
        assert_eq!(
            content_security_policy(&[]),
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn csp_lists_redirect_origins_in_form_action() {
        let origins = [
            "https://app.example.com".to_owned(),
            "https://docs.example.com:8443".to_owned(),
        ];
        assert_eq!(
            content_security_policy(&origins),
            "default-src 'none'; style-src 'unsafe-inline'; \
             form-action 'self' https://app.example.com https://docs.example.com:8443; \
             frame-ancestors 'none'"
        );
    }

    #[test]
    fn csp_leaves_out_origins_that_could_add_a_directive() {
        let origins = [
            "https://a.example; script-src *".to_owned(),
            "https://a.example, *".to_owned(),
            "* 'unsafe-inline'".to_owned(),
            "http://plain.example".to_owned(),
            "https://a.example/path".to_owned(),
            "https://a.example\r\nSet-Cookie: x=1".to_owned(),
            "'self'".to_owned(),
            String::new(),
            "https://ok.example".to_owned(),
        ];
        assert_eq!(
            content_security_policy(&origins),
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https://ok.example; \
             frame-ancestors 'none'"
        );
    }
}

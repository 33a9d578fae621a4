//! A route's `roles` (SPEC §2 `routes[].roles`; §3.7; §5 `forbidden`): a
//! principal — bearer token or API key — without one of them gets 403 and
//! the backend never sees the request; with it, 200.

mod support;

use support::*;

#[tokio::test]
async fn principal_without_the_role_gets_403_and_with_it_200() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    for roles in [&[][..], &["user"][..], &["Admin", "admins"][..]] {
        let res = get_with_token(&gate, "/echo/admin/x", &token_for("bob", roles)).await;
        assert_error(res, 403, "forbidden", &format!("roles {roles:?}")).await;
        assert_never_seen(&backend, "a token without the admin role").await;
    }
    let res = get_with_api_key(&gate, "/echo/admin/x", API_KEY).await;
    assert_error(res, 403, "forbidden", "API key with role service").await;
    assert_never_seen(&backend, "an API key without the admin role").await;

    let token = token_for("root", &["user", "admin"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/admin/x", &token, "admin").await;
    assert_identity(&request, "root", "user,admin", "jwt", "admin");
}

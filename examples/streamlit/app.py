"""A one-file Streamlit app that knows who is signed in, because gatehouse
says so: `X-Auth-User`, `X-Auth-Roles` and `X-Auth-Method` arrive on the
WebSocket upgrade (`/_stcore/stream`) that gatehouse authenticated with the
browser's session cookie, and Streamlit hands that request's headers to the
script as `st.context.headers`.

Run it behind gatehouse (README, "Streamlit"; `scripts/streamlit-check` does
all of it and drives a real browser through it):

    streamlit run examples/streamlit/app.py --server.address 127.0.0.1 \
        --server.port 8501 --server.headless true \
        --server.enableCORS false --server.enableXsrfProtection false

Bind it to 127.0.0.1: the identity headers are only trustworthy when nothing
but gatehouse can reach the app.
"""

import streamlit as st

st.set_page_config(page_title="Streamlit behind gatehouse", page_icon=":lock:")

headers = st.context.headers
user = headers.get("X-Auth-User")
roles = [r for r in headers.get("X-Auth-Roles", "").split(",") if r]
method = headers.get("X-Auth-Method")

st.title("Streamlit behind gatehouse")

if user is None:
    st.error("No X-Auth-User header: this app is not being reached through gatehouse.")
    st.stop()

# st.text, not st.markdown: a user name is data, never markup.
st.text(f"Signed in as {user}")
st.caption(
    f"roles: {', '.join(roles) or '(none)'} · method: {method} · "
    f"request id: {headers.get('X-Request-Id')}"
)

# Each click is a message to the server over the WebSocket and a rerun of
# this script; the new count comes back the same way.
if "clicks" not in st.session_state:
    st.session_state.clicks = 0
if st.button("Count"):
    st.session_state.clicks += 1
st.text(f"Clicks: {st.session_state.clicks}")

# An upload is an HTTP PUT to /_stcore/upload_file/…: the one kind of request
# Streamlit's own XSRF token would guard. Here gatehouse's CSRF check does.
upload = st.file_uploader("Upload a text file")
if upload is not None:
    st.text(f"Uploaded {upload.name}: {upload.size} bytes")

# gatehouse removes its own cookie before forwarding: the app sees only its own.
st.caption(f"cookies the app receives: {', '.join(sorted(st.context.cookies)) or '(none)'}")

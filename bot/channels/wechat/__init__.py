"""WeChat Official Account (公众号): the server callback at `/wechat` and the customer-service API.

Inbound: WeChat POSTs each message or event as XML signed with the account's token, in plaintext
mode or in safe mode (`encrypt_type=aes`: AES-256-CBC with the EncodingAESKey). Each one becomes an
`Inbound` and one dialog step. WeChat waits 5 seconds for the answer, then drops the connection and
tries again, three times. A step that finishes within `PASSIVE_BUDGET` is answered in the HTTP
response (a passive reply); a slower one is answered `success`, and its replies are written to the
outbox and leave through the customer-service message API. A retry of a message that is still being
processed attaches to the running step (in this process) or finds the message already claimed by its
`MsgId` (in the database), so the dialog runs once and its answer goes out once.

Outbound: staff answers and status notices come from the outbox, which calls `WeChatChannel.send`.
The API access token is kept in the database for every process (each token WeChat issues retires the
previous one after five minutes) and refreshed before it expires and when WeChat calls it invalid.

Modules: `channel` (the callback's dialog steps and the sender), `router` (the HTTP routes), `api` (the
customer-service and subscription API, the access token), `crypto` (signatures, safe mode), `messages` (XML in
and out), `notices` (subscription notices), `cli` (`qinglian wechat …`). The package imports none of them, so a
command that needs one (`qinglian wechat menu`) does not load the dialog and the classifier with it.
"""

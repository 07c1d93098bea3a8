// The web chat's talk with the service (chat.html): its requests, their failures said in the resident's words,
// and the page's own texts. Loaded before chat.js, which uses window.QinglianChatNet.
(function () {
  "use strict";

  var TIMEOUT_MS = 30000;
  var HEADERS = { "X-Qinglian-Chat": "1", "Accept": "application/json" };
  var COMMAND_RE = /^[a-z]{1,20}$/;

  var TEXT = {
    network: "网络错误，请重试 / Network error, please try again",
    timeout: "请求超时，请重试 / The request timed out, please try again",
    session: "会话已失效，请刷新页面后重试 / Your session has expired, please reload the page",
    tooLarge: "文件太大，无法上传 / The file is too large to upload",
    tooLong: "这条消息超过{max}字，没有发送，仍在输入框里：请分成几条发送。 / This message is over {max_en} characters and was not sent; it is still in the box: please send it in several messages.",
    invalid: "内容过长或格式不正确，请修改后重试 / The message is too long or not valid, please change it and try again",
    busy: "操作太频繁，请稍后再试 / Too many requests, please wait a moment",
    server: "服务暂时不可用，请稍后重试 / The service is temporarily unavailable, please try again later",
    refused: "请求未被接受，请重试 / The request was not accepted, please try again",
    notSent: "未发送 · Not sent",
    options: "可选的回答 / Answers to choose from",
    copy: "复制查询码 / Copy code",
    copied: "已复制 ✓ / Copied ✓",
    copyFailed: "请长按手动复制： / Please copy it by hand: ",
    retry: "重试 Retry",
    typing: "正在回复 Replying"
  };

  // ---------- network ----------
  function failure(message, final) {
    var err = new Error(message);
    err.friendly = message;
    err.final = !!final;  // sending the same again cannot help (too large, not valid): no "Retry"
    return err;
  }

  function messageForStatus(status) {
    if (status === 401 || status === 403) return TEXT.session;
    if (status === 413) return TEXT.tooLarge;
    if (status === 422) return TEXT.invalid;
    if (status === 429) return TEXT.busy;
    if (status >= 500) return TEXT.server;
    return TEXT.refused;
  }

  function api(method, path, body, timeout, messageId) {
    var init = { method: method, headers: {}, credentials: "same-origin", cache: "no-store" };
    Object.keys(HEADERS).forEach(function (k) { init.headers[k] = HEADERS[k]; });
    if (messageId) init.headers["X-Qinglian-Message-Id"] = messageId;
    if (body instanceof FormData) {
      init.body = body;  // the browser sets the multipart boundary
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timedOut = false;
    var timer = null;
    if (controller) {
      init.signal = controller.signal;
      timer = setTimeout(function () { timedOut = true; controller.abort(); }, timeout || TIMEOUT_MS);
    }
    function done() { if (timer) clearTimeout(timer); }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (raw) {
        done();
        var data = null;
        try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
        if (!resp.ok) {
          if (window.console && data && data.detail) console.warn("Qinglian chat:", resp.status, data.detail);
          // 503 is the service's own "busy, your answers are kept" in the resident's language (a proxy's page is not)
          if (resp.status === 503 && data && typeof data.detail === "string" && data.detail.trim()) {
            throw failure(data.detail.trim());
          }
          throw failure(messageForStatus(resp.status), resp.status === 413 || resp.status === 422);
        }
        if (!data || !Array.isArray(data.messages)) throw failure(TEXT.server);
        return data.messages;
      });
    }, function () {
      done();
      throw failure(timedOut ? TEXT.timeout : TEXT.network);
    });
  }

  // One step of the conversation: show the user's bubble (if any), call the server, show the replies.

  function newMessageId() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // "/status 1234 5678 9012 3456" -> {command: "status", argument: "1234 5678 9012 3456"}
  function toPayload(text) {
    var m = /^[\/\uff0f]([^\s]+)(?:\s+([\s\S]*))?$/.exec(text);
    if (m) {
      var command = m[1].toLowerCase();
      if (COMMAND_RE.test(command)) {
        var payload = { command: command };
        var argument = (m[2] || "").trim();
        if (argument) payload.argument = argument;
        return payload;
      }
    }
    return { text: text };
  }

  window.QinglianChatNet = {
    TEXT: TEXT, api: api, failure: failure, newMessageId: newMessageId, toPayload: toPayload
  };
})();

// Deadlines count down while a list or a ticket stays open: every <time class="due" data-due="ISO"> shows the
// time left (or overdue) and takes the colour of how close it is, as the server rendered it at first: amber
// when the deadline is at or before data-soon-until (the end of the loop's warn_working_days-th working day,
// computed by the server with the city's holidays), red once it has passed.
"use strict";
(function () {
  function span(ms) {
    var minutes = Math.floor(ms / 60000), days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60), mins = minutes % 60;
    return days ? [days + " 天 " + hours + " 小时", days + " d " + hours + " h"]
                : [hours + " 小时 " + mins + " 分", hours + " h " + mins + " min"];
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.due[data-due]").forEach(function (element) {
      var due = Date.parse(element.getAttribute("data-due")), left = due - now;
      var soonUntil = Date.parse(element.getAttribute("data-soon-until") || "");
      var parts = span(Math.abs(left));
      var zh = left < 0 ? "超期 " + parts[0] : "剩 " + parts[0];
      var en = left < 0 ? parts[1] + " overdue" : parts[1] + " left";
      element.className = "due due-" + (left < 0 ? "over" : due <= soonUntil ? "soon" : "ok");
      element.firstChild.nodeValue = zh;
      var english = element.querySelector(".en");
      if (english) { english.textContent = en; }
    });
  }
  setInterval(tick, 30000);
})();

// Deadlines count down while a list or a ticket stays open: every <time class="due" data-due="ISO"> shows the
// time left (or overdue) and takes the colour of how close it is, as the server rendered it at first: amber
// when the deadline is at or before data-soon-until (the end of the loop's warn_working_days-th working day,
// computed by the server with the city's holidays), red once it has passed.
"use strict";
// Its words are the console's texts due.* in each language, which the page hands it in
// <meta name="countdown-texts" data-zh-days="{days} 天 {hours} 小时" ...>.
(function () {
  var words = document.querySelector('meta[name="countdown-texts"]');
  function say(locale, name, values) {
    var text = (words && words.getAttribute("data-" + locale + "-" + name)) || "";
    return text.replace(/\{(\w+)\}/g, function (whole, key) { return key in values ? values[key] : whole; });
  }
  function span(ms, locale) {
    var minutes = Math.floor(ms / 60000), days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60), mins = minutes % 60;
    return days ? say(locale, "days", {days: days, hours: hours})
                : say(locale, "hours", {hours: hours, minutes: mins});
  }
  function tick() {
    if (!words) { return; }  // a page without the words keeps what the server wrote
    var now = Date.now();
    document.querySelectorAll("time.due[data-due]").forEach(function (element) {
      var due = Date.parse(element.getAttribute("data-due")), left = due - now;
      var soonUntil = Date.parse(element.getAttribute("data-soon-until") || "");
      var state = left < 0 ? "over" : due <= soonUntil ? "soon" : "ok";
      var name = state === "over" ? "overdue" : state === "soon" ? "soon" : "left";  // said, not only coloured
      var zh = say("zh", name, {span: span(Math.abs(left), "zh")});
      var en = say("en", name, {span: span(Math.abs(left), "en")});
      element.className = "due due-" + state;
      element.firstChild.nodeValue = zh;
      var english = element.querySelector(".en");
      if (english) { english.textContent = en; }
    });
  }
  setInterval(tick, 30000);
})();

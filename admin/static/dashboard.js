// keyward dashboard: the copy button of a new key, and the login link's
// form sent at once. Everything else works without JavaScript (the form
// has its button).
"use strict";
(function () {
  var form = document.getElementById("login-link");
  if (form) {
    form.submit();
  }
})();
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) {
    button.textContent = "Select the key and copy it";
    return;
  }
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
  }, function () {
    button.textContent = "Select the key and copy it";
  });
});

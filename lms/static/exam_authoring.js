/* Exam lesson form: choosing another bank reloads the page with that bank's questions,
 * and only the part of the form that the chosen selection uses is shown. Without
 * JavaScript both parts stay visible and the bank is shown with its button. */
(function () {
  "use strict";
  var picker = document.getElementById("bank-picker");
  var select = document.getElementById("bank");
  if (picker && select) {
    select.addEventListener("change", function () {
      picker.submit();
    });
  }
  var form = document.getElementById("exam-form");
  if (!form) {
    return;
  }
  var radios = form.querySelectorAll("input[name=selection]");
  var parts = form.querySelectorAll("fieldset[data-selection]");

  function update() {
    var chosen = null;
    radios.forEach(function (radio) {
      if (radio.checked) {
        chosen = radio.value;
      }
    });
    parts.forEach(function (part) {
      part.hidden = chosen !== null && part.getAttribute("data-selection") !== chosen;
    });
  }

  radios.forEach(function (radio) {
    radio.addEventListener("change", update);
  });
  update();
}());

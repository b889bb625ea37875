(function(){
  function show(box, i){
    var frames = box.querySelectorAll('img.frame');
    i = Math.max(0, Math.min(frames.length - 1, i));
    frames.forEach(function(img, k){ img.hidden = (k !== i); });
    box.querySelector('input[type=range]').value = i;
    box.querySelector('.label').textContent = frames[i].dataset.label;
  }
  document.querySelectorAll('.slider').forEach(function(box){
    var range = box.querySelector('input[type=range]');
    var button = box.querySelector('button');
    var timer = null;
    range.addEventListener('input', function(){ show(box, parseInt(range.value, 10)); });
    if (button) button.addEventListener('click', function(){
      if (timer) { clearInterval(timer); timer = null; button.textContent = 'play'; return; }
      var n = box.querySelectorAll('img.frame').length;
      if (parseInt(range.value, 10) >= n - 1) show(box, 0);
      button.textContent = 'pause';
      timer = setInterval(function(){
        var i = parseInt(range.value, 10) + 1;
        if (i >= n) { clearInterval(timer); timer = null; button.textContent = 'play'; return; }
        show(box, i);
      }, 700);
    });
    show(box, parseInt(range.value, 10));
  });
})();

def test_login_page_renders_chinese_with_security_headers(client):
    resp = client.get("/login")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "登录" in html or "Log in" in html
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_login_and_home(client, people):
    emp = people.employee("李四")
    people.user("lisi", "trainee", employee=emp)
    resp = client.login("lisi")
    assert resp.status_code == 302
    home = client.get("/")
    assert home.status_code == 200
    assert "李四" in home.get_data(as_text=True)

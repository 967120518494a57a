import io

from django.core.mail import EmailMultiAlternatives

from portal.devmail import DevMailBackend


def test_development_mail_is_written_as_readable_korean_text_with_whole_links(tmp_path):
    link = "http://127.0.0.1:8000/applications/1/?" + "x" * 150  # longer than a QP line
    message = EmailMultiAlternatives(
        subject="[GPU 포털] 신청이 승인되었습니다",
        body=f"신청이 승인되었습니다.\n\n자세히 보기: {link}\n",
        to=["kim@demo-univ.ac.kr"],
    )
    stream = io.StringIO()

    assert DevMailBackend(directory=str(tmp_path / "mail"), stream=stream).send_messages([message]) == 1

    [saved] = (tmp_path / "mail").glob("*.txt")
    text = saved.read_text(encoding="utf-8")
    assert "Subject: [GPU 포털] 신청이 승인되었습니다" in text
    assert "신청이 승인되었습니다." in text
    assert link in text
    assert "=\n" not in text and "base64" not in text
    assert link in stream.getvalue() and str(saved) in stream.getvalue()

"""Hot desking's decisions and flow (issue 19 part 4): the outcome prompt for each login/logout case, the
flow's order (username, then password, then the change), and the login's end in time."""

from __future__ import annotations

from engine.call.b2bua import CallInfo
from engine.call.features import FeatureApplied, FeatureFlow
from engine.call.hotdesk import HotDeskChange, HotDeskFlow, decide, feature_flow
from engine.call.routing import FeatureCall
from engine.dialplan.starcodes import DEFAULT_TABLE, Feature
from engine.model.admin import hash_secret
from engine.model.cdr import Direction
from engine.model.features import LineFeatures, features_of, with_hot_desk
from engine.script import Answer, Answered, Collect, Collected, Hangup, Play, Played, Sound
from engine.store.features import HotDeskAccount

SAM = HotDeskAccount("202", True, hash_secret("4711", b"salt"))


def test_the_outcome_of_each_case() -> None:
    login = HotDeskChange("203", "2020", "4711")
    assert decide(login, SAM, None) == "hotdesk-logged-in"
    assert decide(HotDeskChange("203", "2020", "1234"), SAM, None) == "hotdesk-wrong-password"
    assert decide(login, None, None) == "hotdesk-wrong-password"  # no such username: the same prompt
    assert decide(login, HotDeskAccount("202", False, SAM.password_hash), None) == "hotdesk-not-allowed"
    assert decide(HotDeskChange("202", "2020", "4711"), SAM, None) == "hotdesk-not-allowed"  # own phone
    assert decide(HotDeskChange("203", "2010", "0000"), HotDeskAccount("201", True, None), None) \
        == "hotdesk-logged-in"  # the default dialable password
    assert decide(HotDeskChange("203"), None, "202") == "hotdesk-logged-out"
    assert decide(HotDeskChange("203"), None, None) == "hotdesk-not-logged-in"


def routed(code: str) -> FeatureCall:
    star = DEFAULT_TABLE.match(code)
    assert star is not None
    return FeatureCall(star, "203", CallInfo(Direction.INTERNAL, "203", "Desk", code))


def test_the_codes_and_their_flows() -> None:
    assert DEFAULT_TABLE.code(Feature.HOT_DESK_LOGIN) == "*11"
    assert DEFAULT_TABLE.code(Feature.HOT_DESK_LOGOUT) == "*12"
    assert isinstance(feature_flow(routed("*11")), HotDeskFlow)
    assert isinstance(feature_flow(routed("*78")), FeatureFlow)


def test_login_asks_for_the_username_then_the_password() -> None:
    flow = HotDeskFlow(routed("*11"))
    assert flow.start() == Answer()
    assert flow.resume(Answered()) == Play((Sound("hotdesk-username"),), barge_in=True)
    assert isinstance(flow.resume(Played()), Collect)
    assert flow.resume(Collected("2020", "terminator", "#")) == Play((Sound("hotdesk-password"),),
                                                                       barge_in=True)
    assert isinstance(flow.resume(Played()), Collect)
    assert flow.resume(Collected("4711", "terminator", "#")) == HotDeskChange("203", "2020", "4711")
    assert flow.resume(FeatureApplied(("hotdesk-logged-in",))) == Play(
        (Sound("hotdesk-logged-in"),), barge_in=False)
    assert flow.resume(Played()) == Hangup()


def test_nothing_keyed_in_is_refused_and_logout_asks_nothing() -> None:
    flow = HotDeskFlow(routed("*11"))
    flow.resume(Answered())
    flow.resume(Played())
    assert flow.resume(Collected("", "timeout")) == Play((Sound("hotdesk-wrong-password"),), barge_in=False)
    assert flow.resume(Played()) == Hangup()
    assert HotDeskFlow(routed("*12")).resume(Answered()) == HotDeskChange("203")


def test_a_login_ends_at_its_time() -> None:
    features = features_of(with_hot_desk({}, "202", 1000.0))
    assert features.hot_desk == ("202", 1000.0) and features.active
    assert features.hot_desk_line(999.0) == "202"
    assert features.hot_desk_line(1000.0) is None
    assert LineFeatures().hot_desk_line(0.0) is None
    assert with_hot_desk({"hot_desk": {"line": "202", "until": 1.0}, "x": 1}, None) == {"x": 1}
